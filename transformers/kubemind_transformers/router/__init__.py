"""The inference router: KServe InferenceGraphs executed over gRPC, each served as a model.

Modules: `graph` (the InferenceGraph read and checked at start), `conditions` (KServe's gjson
condition syntax), `messages` (what flows between steps), `adapters` (a step's request built
from earlier replies: tensors, prompt templates), `steps` (calling a service: grpc-v2, OpenAI
chat, OIP generate), `executor` (Sequence, Switch, Ensemble, Splitter; dependencies, deadlines),
`model` (the graph as a kserve.Model with its routes), `settings`, `__main__`.
"""
