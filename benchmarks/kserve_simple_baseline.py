"""The benchmark baseline: Triton's `simple` model on a plain KServe `ModelServer`, nothing of kubemind.

python -m benchmarks.kserve_simple_baseline --model_name simple --http_port P --grpc_port Q

KServe parses its own flags (`--http_port`, `--grpc_port`, `--workers`, ...) from argv when `kserve` is
imported and always binds 0.0.0.0; the benchmark passes ports it picked at run time.
"""

from __future__ import annotations

import argparse
import sys

# KServe's REST server registers its OpenAI routes whenever vLLM is importable, importing vLLM and
# torch at startup: tens of seconds on this machine, and a crash (RuntimeError, not the ImportError
# KServe catches) while the shared venv's torch and torchvision disagree. The v2 protocol measured
# here never touches those routes, so make `import vllm` fail and KServe skips them.
sys.modules["vllm"] = None  # type: ignore[assignment]

import kserve  # noqa: E402
from kserve import InferOutput, InferRequest, InferResponse, model_server  # noqa: E402


class SimpleBaselineModel(kserve.Model):
    """INPUT0, INPUT1: INT32 [-1, 16] -> OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1."""

    def load(self) -> bool:
        self.ready = True
        return self.ready

    async def predict(
        self, payload: InferRequest, headers: dict[str, str] | None = None
    ) -> InferResponse:
        first = payload.get_input_by_name("INPUT0").as_numpy()
        second = payload.get_input_by_name("INPUT1").as_numpy()
        outputs = []
        for name, value in (("OUTPUT0", first + second), ("OUTPUT1", first - second)):
            output = InferOutput(name=name, shape=list(value.shape), datatype="INT32")
            output.set_data_from_numpy(value)
            outputs.append(output)
        # Mirroring the request's binary/raw choice is what KServe's own examples do; without it
        # tritonclient.grpc (which reads raw_output_contents) would get no data back.
        return InferResponse(
            response_id=payload.id or "",
            model_name=self.name,
            infer_outputs=outputs,
            use_binary_outputs=payload.use_binary_outputs,
            requested_outputs=payload.request_outputs,
        )


def main() -> None:
    parser = argparse.ArgumentParser(parents=[model_server.parser], conflict_handler="resolve")
    parser.add_argument("--model_name", default="simple")
    args, _ = parser.parse_known_args()
    model = SimpleBaselineModel(args.model_name)
    model.load()
    kserve.ModelServer(http_port=args.http_port, grpc_port=args.grpc_port).start([model])


if __name__ == "__main__":
    main()
