"""all-MiniLM-L6-v2 embeddings on a real Triton, over v2 and the OpenAI embeddings API."""

from __future__ import annotations

import base64
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest

from kubemind.processes import ServerProcess
from tests.component.triton_fixtures import running_predictor, running_triton, stock_client

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The new movie is awesome.",
    "The film was great fun to watch.",
    "Quarterly revenue grew by ten percent.",
]
RELATED = [(0, 1), (2, 3)]
UNRELATED = [(0, 2), (0, 4), (1, 3), (3, 4)]


@pytest.fixture(scope="module")
def predictor(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    workdir = tmp_path_factory.mktemp("embeddings")
    with running_triton(workdir, ["minilm"]) as triton, running_predictor(triton, workdir) as server:
        yield server


def v2_embed(server: ServerProcess, texts: list[str]) -> httpx.Response:
    body = {"inputs": [{"name": "text", "datatype": "BYTES", "shape": [len(texts)], "data": texts}]}
    return httpx.post(f"{server.http_url}/v2/models/minilm/infer", json=body, timeout=30)


def test_v2_text_in_normalised_384d_vectors_out(predictor: ServerProcess) -> None:
    response = v2_embed(predictor, SENTENCES)

    assert response.status_code == 200, response.text
    output, tokens = response.json()["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("embedding", "FP32", [5, 384])
    vectors = np.array(output["data"]).reshape(5, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # each text's token count from the model's tokenizer: "A man is eating food." is
    # [CLS] a man is eating food . [SEP]
    assert (tokens["name"], tokens["datatype"], tokens["shape"]) == ("tokens", "INT32", [5, 1])
    assert tokens["data"][0] == 8


def test_related_sentences_score_clearly_above_unrelated(predictor: ServerProcess) -> None:
    output = v2_embed(predictor, SENTENCES).json()["outputs"][0]
    vectors = np.array(output["data"]).reshape(len(SENTENCES), 384)
    similarity = vectors @ vectors.T

    lowest_related = min(similarity[a, b] for a, b in RELATED)
    highest_unrelated = max(similarity[a, b] for a, b in UNRELATED)
    assert lowest_related > 0.5
    assert lowest_related - highest_unrelated > 0.3


def test_openai_client_works_unchanged(predictor: ServerProcess) -> None:
    client = openai.OpenAI(base_url=f"{predictor.http_url}/openai/v1", api_key="unused", max_retries=0)

    result = client.embeddings.create(model="minilm", input=SENTENCES[:2])
    single = client.embeddings.create(model="minilm", input=SENTENCES[0], encoding_format="float")

    assert [d.index for d in result.data] == [0, 1]
    vectors = np.array([d.embedding for d in result.data])
    assert vectors.shape == (2, 384)
    v2_vectors = np.array(v2_embed(predictor, SENTENCES[:2]).json()["outputs"][0]["data"]).reshape(2, 384)
    np.testing.assert_allclose(vectors, v2_vectors, atol=1e-6)
    np.testing.assert_allclose(single.data[0].embedding, vectors[0], atol=1e-6)


def test_openai_usage_counts_the_models_own_tokens(predictor: ServerProcess) -> None:
    """`usage` is the tokenizer's count, [CLS]/[SEP] included and truncated at 256 as the model
    sees the text, not a word count: punctuation and word pieces are tokens of their own."""
    from tokenizers import Tokenizer

    from kubemind_transformers.rag.embedder import TOKENIZER_FILE, default_onnx_dir

    tokenizer = Tokenizer.from_file(str(default_onnx_dir() / TOKENIZER_FILE))  # exported with the model
    tokenizer.enable_truncation(256)
    tokenizer.no_padding()  # the exported file pads to 128; padding is no token of the text
    texts = ["Quarterly revenue grew by ten percent, unexpectedly!", "antidisestablishmentarianism " * 300]
    client = openai.OpenAI(base_url=f"{predictor.http_url}/openai/v1", api_key="unused", max_retries=0)

    usage = client.embeddings.create(model="minilm", input=texts).usage

    expected = [len(tokenizer.encode(text).ids) for text in texts]
    assert expected[1] == 256  # the long text is truncated, as the model sees it
    assert usage.prompt_tokens == usage.total_tokens == sum(expected)
    assert usage.prompt_tokens != sum(len(text.split()) + 2 for text in texts)


def test_openai_errors_are_client_errors(predictor: ServerProcess) -> None:
    url = f"{predictor.http_url}/openai/v1/embeddings"

    unknown_model = httpx.post(url, json={"model": "bert", "input": "hi"}, timeout=10)
    empty = httpx.post(url, json={"model": "minilm", "input": ["ok", ""]}, timeout=10)

    # OpenAI routes answer in OpenAI's error shape, naming the parameter
    assert unknown_model.status_code == 404 and unknown_model.json()["error"]["param"] == "model"
    assert empty.status_code == 400
    assert empty.json()["error"]["param"] == "input" and "input[1]" in empty.json()["error"]["message"]


def test_stock_grpc_client_gets_embeddings(predictor: ServerProcess) -> None:
    texts = [base64.b64encode(s.encode()).decode() for s in SENTENCES[:2]]
    request = {"model": "minilm", "inputs": [{"name": "text", "datatype": "BYTES", "shape": [2], "data": texts}]}

    (answer,) = stock_client(predictor.grpc_address, request)

    vectors = np.array(answer["outputs"]["embedding"])
    assert vectors.shape == (2, 384)
    assert float(vectors[0] @ vectors[1]) > 0.5


def test_a_lone_surrogate_is_a_400_in_openais_shape(predictor: ServerProcess) -> None:
    reply = httpx.post(
        f"{predictor.http_url}/openai/v1/embeddings",
        content=b'{"model": "minilm", "input": "\\ud800"}',
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    assert reply.status_code == 400
    assert reply.headers["content-type"] == "application/json"
    error = reply.json()["error"]
    assert error["type"] == "InvalidInput" and error["code"] == "400"
    assert "surrogate" in error["message"]
