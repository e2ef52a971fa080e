"""Simulated NPU fleet: real inference kernels, devices and fault injection."""
