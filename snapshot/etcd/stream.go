package etcd

import (
	"context"
	"errors"
	"fmt"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
)

// snapshotStream reads etcd's Maintenance/Snapshot stream into one reused frame buffer.
// clientv3's SnapshotWithVersion decodes every 32 KiB chunk into a new message and copies it
// through a pipe: as much garbage as the database is large, which kept the collector running and
// the heap at twice its live size for the whole stream.
type snapshotStream struct {
	stream  grpc.ClientStream
	frame   snapshotFrame
	pending []byte // what Read has not yet returned of the current frame's data
}

// snapshotMethod is the RPC clientv3's Maintenance.Snapshot calls.
const snapshotMethod = "/etcdserverpb.Maintenance/Snapshot"

// openSnapshot starts a snapshot stream on cli's connection and reads its first message, so
// that a member that refuses shows up here. As clientv3 does, it waits for the connection to be
// ready rather than failing while it reconnects; ctx bounds the wait.
func openSnapshot(ctx context.Context, cli *clientv3.Client) (*snapshotStream, error) {
	desc := &grpc.StreamDesc{StreamName: "Snapshot", ServerStreams: true}
	st, err := cli.ActiveConnection().NewStream(ctx, desc, snapshotMethod, grpc.ForceCodecV2(frameCodec{}), grpc.WaitForReady(true))
	if err != nil {
		return nil, err
	}
	if err := st.SendMsg(&pb.SnapshotRequest{}); err != nil {
		return nil, err
	}
	if err := st.CloseSend(); err != nil {
		return nil, err
	}
	s := &snapshotStream{stream: st}
	if err := s.next(); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the member ended the snapshot stream without sending anything")
		}
		return nil, err
	}
	return s, nil
}

// Version is the storage version the member sends with every chunk (etcd 3.6 and later; empty
// before).
func (s *snapshotStream) Version() string { return s.frame.version }

// Read returns the snapshot's bytes (etcd's appended SHA-256 included), then io.EOF.
func (s *snapshotStream) Read(p []byte) (int, error) {
	for len(s.pending) == 0 {
		if err := s.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

func (s *snapshotStream) next() error {
	if err := s.stream.RecvMsg(&s.frame); err != nil {
		return err
	}
	s.pending = s.frame.blob
	return nil
}

// snapshotFrame is one SnapshotResponse as the wire has it; blob points into raw, which the next
// message overwrites.
type snapshotFrame struct {
	raw     []byte
	blob    []byte
	version string
}

// SnapshotResponse's fields this reads; header (1) and remaining_bytes (2) are skipped.
const (
	fieldBlob    protowire.Number = 3
	fieldVersion protowire.Number = 4
)

func (f *snapshotFrame) parse() error {
	b := f.raw
	f.blob = nil
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return fmt.Errorf("snapshot message: %w", protowire.ParseError(n))
		}
		b = b[n:]
		if typ == protowire.BytesType && (num == fieldBlob || num == fieldVersion) {
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return fmt.Errorf("snapshot message field %d: %w", num, protowire.ParseError(n))
			}
			if num == fieldBlob {
				f.blob = v
			} else if string(v) != f.version { // the same in every message: no new string each time
				f.version = string(v)
			}
			b = b[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, b)
		if n < 0 {
			return fmt.Errorf("snapshot message field %d: %w", num, protowire.ParseError(n))
		}
		b = b[n:]
	}
	return nil
}

// frameCodec decodes a snapshot message into a *snapshotFrame, reusing its buffer; requests are
// encoded by gRPC's proto codec. The name is the proto codec's: the wire format is the same.
type frameCodec struct{}

func (frameCodec) Name() string { return grpcproto.Name }

func (frameCodec) Marshal(v any) (mem.BufferSlice, error) {
	return encoding.GetCodecV2(grpcproto.Name).Marshal(v)
}

func (frameCodec) Unmarshal(data mem.BufferSlice, v any) error {
	f, ok := v.(*snapshotFrame)
	if !ok {
		return fmt.Errorf("snapshot stream: cannot decode into %T", v)
	}
	n := data.Len()
	if cap(f.raw) < n {
		f.raw = make([]byte, n)
	}
	f.raw = f.raw[:n]
	data.CopyTo(f.raw)
	return f.parse()
}
