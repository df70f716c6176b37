package etcd

import (
	"bytes"
	"io"
	"testing"
	"unsafe"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
)

func marshalResponse(t *testing.T, r *pb.SnapshotResponse) []byte {
	t.Helper()
	b, err := r.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Messages as etcd sends them decode into the frame's one buffer: the data spread over several of
// gRPC's buffers, the header and remaining_bytes skipped, and the version kept without a new
// string per message.
func TestFrameCodecReusesTheFrame(t *testing.T) {
	big := marshalResponse(t, &pb.SnapshotResponse{Header: &pb.ResponseHeader{Revision: 7}, RemainingBytes: 99,
		Blob: bytes.Repeat([]byte("x"), 1000), Version: "3.6.0"})
	var f snapshotFrame
	if err := (frameCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(big[:10]), mem.SliceBuffer(big[10:])}, &f); err != nil {
		t.Fatal(err)
	}
	if len(f.blob) != 1000 || f.blob[999] != 'x' || f.version != "3.6.0" {
		t.Fatalf("decoded %d bytes of data, version %q", len(f.blob), f.version)
	}
	raw, version := &f.raw[0], unsafe.StringData(f.version)

	small := marshalResponse(t, &pb.SnapshotResponse{RemainingBytes: 3, Blob: []byte("abc"), Version: "3.6.0"})
	if err := (frameCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(small)}, &f); err != nil {
		t.Fatal(err)
	}
	if string(f.blob) != "abc" || &f.raw[0] != raw || unsafe.StringData(f.version) != version {
		t.Errorf("second message: data %q, buffer reused %v, version string reused %v", f.blob, &f.raw[0] == raw, unsafe.StringData(f.version) == version)
	}

	// The message with etcd's hash may come with no data before it: an empty blob.
	if err := (frameCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(marshalResponse(t, &pb.SnapshotResponse{}))}, &f); err != nil || len(f.blob) != 0 {
		t.Errorf("empty message: data %q, %v", f.blob, err)
	}
	if err := (frameCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(big[:len(big)-1])}, &f); err == nil {
		t.Error("a truncated message decoded without an error")
	}
	if err := (frameCodec{}).Unmarshal(mem.BufferSlice{mem.SliceBuffer(small)}, &pb.SnapshotResponse{}); err == nil {
		t.Error("decoding into another type did not fail")
	}
}

// fakeStream hands out canned messages, then io.EOF, as a server stream does.
type fakeStream struct {
	grpc.ClientStream
	msgs [][]byte
}

func (s *fakeStream) RecvMsg(m any) error {
	if len(s.msgs) == 0 {
		return io.EOF
	}
	b := s.msgs[0]
	s.msgs = s.msgs[1:]
	return frameCodec{}.Unmarshal(mem.BufferSlice{mem.SliceBuffer(b)}, m)
}

// Read joins the messages' data whatever the reader's buffer size, empty messages included, and
// ends with io.EOF.
func TestSnapshotStreamRead(t *testing.T) {
	var msgs [][]byte
	for _, b := range []string{"abc", "", "defgh", "i"} {
		msgs = append(msgs, marshalResponse(t, &pb.SnapshotResponse{Blob: []byte(b), Version: "3.6.0"}))
	}
	s := &snapshotStream{stream: &fakeStream{msgs: msgs}}
	if err := s.next(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(s)
	if err != nil || string(got) != "abcdefghi" || s.Version() != "3.6.0" {
		t.Errorf("read %q, %v, version %q", got, err, s.Version())
	}
	s = &snapshotStream{stream: &fakeStream{msgs: msgs}}
	var out []byte
	buf := make([]byte, 2)
	for {
		n, err := s.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if string(out) != "abcdefghi" {
		t.Errorf("two bytes at a time: %q", out)
	}
}
