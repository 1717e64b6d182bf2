"""chutebox's stand-in for the Chutes SDK: the names chute files import, recording their calls.

Only used when the real SDK is not installed; see runtime/chute_files.
"""
