"""`kubemind rag index`: build (or bring up to date) a RAG index.

    kubemind rag index --corpus python-reference            # the demo corpus, into $KUBEMIND_HOME
    kubemind rag index --corpus ./docs --index_dir ./docs-index --chunk_size 600

Re-running on the same corpus embeds nothing new; a run stopped half-way resumes where it
stopped. Exit status 2 with the document's name when one cannot be read.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

from kubemind.errors import KubemindError
from kubemind.settings import add_settings_flags, settings_from_values
from kubemind_transformers.rag.settings import IndexSettings


def register(subparsers: Any, name: str, help_text: str) -> None:
    parser = subparsers.add_parser(name, help=help_text, description="Retrieval-augmented generation tools.")
    commands = parser.add_subparsers(dest="rag_command", metavar="COMMAND", required=True)
    index = commands.add_parser(
        "index", help="chunk, embed and upsert a corpus into Milvus", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter, argument_default=argparse.SUPPRESS,
    )  # fmt: skip
    add_settings_flags(index, IndexSettings)
    index.set_defaults(func=run_index)


def run_index(args: argparse.Namespace) -> int:
    values = {key: value for key, value in vars(args).items() if key in IndexSettings.model_fields}
    try:
        settings = settings_from_values(IndexSettings, values)
        report = asyncio.run(index(settings))
    except KubemindError as exc:
        print(f"kubemind rag index: {exc.message}", file=sys.stderr)
        return 2
    manifest = report.manifest
    print(
        f"indexed {manifest.corpus}: {manifest.documents} documents, {manifest.chunks} chunks "
        f"({report.embedded} embedded, {report.skipped} already stored, {report.removed} removed) "
        f"into collection '{manifest.collection}' at {settings.resolved_milvus_uri()}\n"
        f"embedder {manifest.embedder}; corpus digest {manifest.corpus_digest[:16]}; "
        f"manifest {Path(settings.index_dir) / 'index.json'}"
    )
    return 0


async def index(settings: IndexSettings) -> Any:
    from kubemind_transformers.rag.index import build_embedder, build_index, open_store

    embedder = build_embedder(settings)
    store = open_store(settings)
    try:
        return await build_index(settings, embedder, store)
    finally:
        store.close()
        await embedder.close()
