"""Fixtures shared by tests and benchmarks, importable without editing ``sys.path``.

``http_fixture``: a loopback HTTP(S) server with scripted responses (``LocalHTTPServer``, ``Response``);
``onnx_models``: generated insightface-like ONNX graphs (``write_buffalo_like``, ``draw_face_squares``).
"""
