package rgwadmin

import (
	"net"
	"syscall"
)

// quickAckConn works around radosgw's beast frontend, which writes an
// answer's headers and body in two segments with Nagle on (tcp_nodelay is
// off unless "rgw frontends = beast … tcp_nodelay=1"): the body waits for
// the ACK of the headers, which Linux delays by up to 40 ms. Asking for a
// quick ACK around each read and write sends that ACK at once. Measured on
// the lab: 45 ms → 1 ms per admin call with a body.
type quickAckConn struct {
	*net.TCPConn
	raw syscall.RawConn
}

func wrapQuickAck(c net.Conn) net.Conn {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c
	}
	return &quickAckConn{TCPConn: tc, raw: raw}
}

func (c *quickAckConn) quickAck() {
	_ = c.raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}

func (c *quickAckConn) Read(b []byte) (int, error) {
	c.quickAck() // sends an ACK the kernel is holding back
	n, err := c.TCPConn.Read(b)
	c.quickAck()
	return n, err
}

func (c *quickAckConn) Write(b []byte) (int, error) {
	n, err := c.TCPConn.Write(b)
	c.quickAck() // our request re-armed delayed ACKs ("ping-pong" mode)
	return n, err
}
