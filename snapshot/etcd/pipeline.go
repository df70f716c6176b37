package etcd

// hashPipeline hashes chunks on a goroutine of its own, so that hashing overlaps with receiving
// and writing instead of adding to them: on a busy control-plane node that is the difference
// between keeping pace with `etcdctl snapshot save`, which does not hash, and falling behind it.
// Memory is bounded by the buffers in flight: four — one being received and written, one being
// hashed, two queued so that neither side waits on the other's jitter.
type hashPipeline struct {
	d    *digester
	todo chan []byte
	free chan []byte
	done chan struct{}
}

const (
	pipelineBuffers = 4
	pipelineBufSize = 256 << 10
)

func newHashPipeline() *hashPipeline {
	p := &hashPipeline{
		d:    newDigester(),
		todo: make(chan []byte, pipelineBuffers),
		free: make(chan []byte, pipelineBuffers),
		done: make(chan struct{}),
	}
	for range pipelineBuffers {
		p.free <- make([]byte, pipelineBufSize)
	}
	go func() {
		defer close(p.done)
		for b := range p.todo {
			p.d.Write(b)
			p.free <- b[:cap(b)]
		}
	}()
	return p
}

// buffer returns a buffer to read the next chunk into, waiting while all are being hashed.
func (p *hashPipeline) buffer() []byte { return <-p.free }

// hash queues a chunk read into a buffer from buffer(); the caller must not touch it afterwards.
func (p *hashPipeline) hash(b []byte) { p.todo <- b }

// release gives back a buffer that was not queued.
func (p *hashPipeline) release(b []byte) { p.free <- b[:cap(b)] }

// sum waits for every queued chunk and returns the digest. The pipeline is finished afterwards.
func (p *hashPipeline) sum() digest {
	close(p.todo)
	<-p.done
	return p.d.sum()
}

// stop ends the pipeline when its digest is not wanted (a failed attempt). Safe after sum.
func (p *hashPipeline) stop() {
	select {
	case <-p.done:
	default:
		close(p.todo)
		<-p.done
	}
}
