"""Kubelet PodResources API (v1): generated stubs (``api_pb2*``) and the exporter's client.

The stubs are generated from ``api.proto`` with the command in ``README.md`` and committed; the
generated code checks the installed protobuf and grpcio versions at import (see the README for
the lower bounds it needs).
"""
