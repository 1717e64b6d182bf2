"""The conformance kit: black-box checks of any Chutes/OpenAI-compatible endpoint.

`chutebox conformance --base-url URL …` runs them against chutebox itself, vLLM or SGLang
directly, or a Chutes deployment. The kit needs only httpx and the openai SDK. Checks are data
(`Check`) plus small functions, grouped by what they exercise.
"""
