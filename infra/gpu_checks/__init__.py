"""The GPU acceptance checks of ``infra/gpu_check.py``, one module per component.

``common`` (sizes, device timing, the report), ``training``, ``ddp``, ``head``, ``towers``, ``inference``,
and ``cli`` (the command line that runs them in order).
"""
