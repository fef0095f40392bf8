"""Counting mode for emulated devices: a qemu TCG plugin that counts guest instructions between two marks.

build.py sets it up (header, plugin, plugin-capable qemu), selftest.py checks it on a program with a known
count, counting.py runs an artifact under it and returns instructions per invocation.
"""
