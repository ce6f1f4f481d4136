"""Triton Python-backend model sources; `repository.py` copies each one as `<model>/1/model.py`.

They run inside Triton's backend stub, not in kubemind's process: they import only
triton_python_backend_utils, numpy, onnxruntime and tokenizers (the side environment that
tools/install.d/40-triton.sh builds, or the Triton image's own Python on a cluster).
"""
