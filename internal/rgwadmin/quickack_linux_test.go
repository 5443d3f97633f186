package rgwadmin

import (
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestQuickAckConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c) // echo
	}()
	raw, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	c := wrapQuickAck(raw)
	qc, ok := c.(*quickAckConn)
	require.True(t, ok, "a TCP connection is wrapped")
	_, err = c.Write([]byte("ping"))
	require.NoError(t, err)
	buf := make([]byte, 4)
	_, err = io.ReadFull(c, buf)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(buf))
	var v int
	require.NoError(t, qc.raw.Control(func(fd uintptr) {
		v, err = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK)
	}))
	require.NoError(t, err)
	assert.Equal(t, 1, v, "quick ACKs asked for after the read")
	require.NoError(t, c.Close())
	<-done

	p1, p2 := net.Pipe()
	defer p1.Close()
	defer p2.Close()
	assert.Equal(t, p1, wrapQuickAck(p1), "not TCP: left alone")
}
