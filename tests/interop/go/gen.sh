#!/usr/bin/env bash
# Regenerates raftpb/ from ../../../proto/raft/v1/raft.proto.
#
# Tools: protoc from the pinned grpcio-tools of tests/golden/requirements.txt
# (pip install -r ../../golden/requirements.txt), and the Go plugins below,
# installed with `go install` from the Go module proxy.
set -euo pipefail
cd "$(dirname "$0")"
export GOBIN="${GOBIN:-$(mktemp -d)}"
go install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
go install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.2
pkg=github.com/raft-grpc-transport/raft-grpc-transport-rs/tests/interop/go/raftpb
out=$(mktemp -d)
PATH="$GOBIN:$PATH" python3 -m grpc_tools.protoc -I ../../../proto \
  --go_out="$out" --go_opt=paths=source_relative --go_opt=Mraft/v1/raft.proto=$pkg \
  --go-grpc_out="$out" --go-grpc_opt=paths=source_relative --go-grpc_opt=Mraft/v1/raft.proto=$pkg \
  raft/v1/raft.proto
mv "$out"/raft/v1/raft.pb.go "$out"/raft/v1/raft_grpc.pb.go raftpb/
