#!/usr/bin/env bash
# Regenerates the committed gRPC code of the remote ControlNet worker (issue 12 item 2):
#   Sources/RemoteControlNet/Protos/controlnet_worker.proto  ->  Sources/RemoteControlNet/Generated/*.swift
# The generated code is committed so that no build runs the protobuf build plugin (minutes per CI build).
#
# Needs protoc: Debian's `protobuf-compiler`, or PyPI's grpcio-tools (PROTOC="python3 -m grpc_tools.protoc").
# The two Swift plugins (protoc-gen-swift from swift-protobuf, protoc-gen-grpc-swift-2 from grpc-swift-protobuf)
# are built from the versions this package already depends on (Package.swift), into .build (not committed).
#
#   tools/generate-grpc.sh                                  # protoc from PATH
#   PROTOC="/path/venv/bin/python -m grpc_tools.protoc" tools/generate-grpc.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PROTOC=${PROTOC:-protoc}
swift build --product protoc-gen-swift
swift build --product protoc-gen-grpc-swift-2
bin=$(swift build --show-bin-path)
protos=Sources/RemoteControlNet/Protos
out=Sources/RemoteControlNet/Generated
mkdir -p "$out"
$PROTOC \
    --plugin=protoc-gen-swift="$bin/protoc-gen-swift" \
    --plugin=protoc-gen-grpc-swift-2="$bin/protoc-gen-grpc-swift-2" \
    -I "$protos" \
    --swift_out="$out" --swift_opt=Visibility=Internal \
    --grpc-swift-2_out="$out" --grpc-swift-2_opt=Visibility=Internal,Client=true,Server=true \
    "$protos"/controlnet_worker.proto
echo "generated: $(ls "$out")"
