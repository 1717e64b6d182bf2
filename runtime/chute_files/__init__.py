"""Chute files written for the Chutes SDK, served unchanged (`chutebox serve my_chute:chute`).

The SDK's template functions are recorded as they are called: with the SDK installed, its
functions are wrapped; without it, a small stand-in `chutes` package (`shim/`) provides the same
names. Either way the recorded calls become chutebox chute settings.
"""
