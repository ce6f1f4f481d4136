"""Ready-to-paste calls for `kubemind serve` (kubemind.local.services): the CV classifier."""

from __future__ import annotations

from kubemind.processes import python_command


def classifier_sample(http_url: str, grpc_address: str) -> str:
    """Classify matplotlib's grace_hopper.jpg over v2 REST (base64 in JSON), v1, and stock gRPC."""
    return "\n".join(
        [
            f"IMG=$({python_command()} -c \"import matplotlib,base64,pathlib;"
            "print(base64.b64encode((pathlib.Path(matplotlib.get_data_path())/'sample_data/grace_hopper.jpg').read_bytes()).decode())\")",
            f"curl -s -X POST {http_url}/v2/models/efficientnet_lite0/infer -H 'content-type: application/json' "
            '-d "{\\"inputs\\": [{\\"name\\": \\"image\\", \\"datatype\\": \\"BYTES\\", \\"shape\\": [1], \\"data\\": [\\"$IMG\\"]}]}"; echo',
            f"curl -s -X POST {http_url}/v1/models/efficientnet_lite0:predict -H 'content-type: application/json' "
            '-d "{\\"instances\\": [{\\"image\\": {\\"b64\\": \\"$IMG\\"}}]}"; echo',
            f"{python_command()} - <<'PY'",
            "import matplotlib, pathlib, numpy as np, tritonclient.grpc as g",
            "jpeg = (pathlib.Path(matplotlib.get_data_path()) / 'sample_data/grace_hopper.jpg').read_bytes()",
            f"c = g.InferenceServerClient('{grpc_address}')",
            "i = g.InferInput('image', [1], 'BYTES'); i.set_data_from_numpy(np.array([jpeg], dtype=object))",
            "r = c.infer('efficientnet_lite0', [i])",
            "print(r.as_numpy('labels'), r.as_numpy('probabilities'))",
            "PY",
        ]
    )
