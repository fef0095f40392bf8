"""Emulated ARM devices on this machine: qemu-user with an explicit CPU model + Debian's arm64 CPython 3.11
+ a real OpenSSH server on 127.0.0.1, reached through the same SSH transport as a real board.

`edgekit.emu.build.build(name)`, `edgekit.emu.runner.up/down/status`, `edgekit.emu.state.read_state`,
`edgekit.emu.device.ensure_device(target)` (a target's device started, its live connection details filled in);
see README.md beside this file (layout, the python wrapper, the instruction-counting hook).
Wall times measured on these devices are emulated, never device latency.
"""
