"""Transports: the Open Inference Protocol over REST and gRPC, plus Triton extensions."""
