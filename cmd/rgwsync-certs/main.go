// Command rgwsync-certs makes the certificates of the exporter <-> applier
// link: a private CA, then server and client certificates signed by it
// (ECDSA P-256).
//
//	rgwsync-certs ca -out DIR [-name NAME] [-days N]
//	rgwsync-certs issue -ca DIR -name NAME [-dns a,b] [-ip 127.0.0.1] [-days N] [-server] [-client] -out DIR
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"time"

	"github.com/rgwsync/rgwsync/internal/certs"
)

const usage = `usage:
  rgwsync-certs ca -out DIR [-name NAME] [-days N]
      writes DIR/ca.pem and DIR/ca-key.pem (refuses to replace an existing CA)
  rgwsync-certs issue -ca DIR -name NAME [-dns a,b] [-ip 127.0.0.1,::1] [-days N] [-server] [-client] -out DIR
      writes DIR/NAME.pem and DIR/NAME-key.pem (replacing them: peers reload them within a second)
      NAME is the subject CN, and a DNS SAN when it is a host name; neither -server nor -client means both`

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "rgwsync-certs:", err)
		os.Exit(2)
	}
}

func run(args []string, out io.Writer) error {
	if len(args) == 0 {
		return errors.New(usage)
	}
	switch args[0] {
	case "ca":
		return runCA(args[1:], out)
	case "issue":
		return runIssue(args[1:], out)
	case "help", "-h", "-help", "--help":
		fmt.Fprintln(out, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", args[0], usage)
}

func runCA(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("ca", flag.ContinueOnError)
	dir := fs.String("out", "", "directory for ca.pem and ca-key.pem")
	name := fs.String("name", "rgwsync CA", "CA subject CN")
	days := fs.Int("days", int(certs.DefaultCAValidity/(24*time.Hour)), "validity in days")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() > 0 {
		return errors.New("ca: -out DIR required, no arguments\n" + usage)
	}
	if *days <= 0 {
		return errors.New("ca: -days must be positive")
	}
	ca, err := certs.NewCA(*name, time.Duration(*days)*24*time.Hour, time.Time{})
	if err != nil {
		return err
	}
	if err := ca.WriteFiles(*dir); err != nil {
		return err
	}
	fmt.Fprintf(out, "CA %q valid until %s: %s/%s, key %s/%s\n", *name, ca.Cert.NotAfter.Format(time.RFC3339),
		*dir, certs.CAFile, *dir, certs.CAKeyFile)
	return nil
}

func runIssue(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("issue", flag.ContinueOnError)
	caDir := fs.String("ca", "", "directory of ca.pem and ca-key.pem")
	name := fs.String("name", "", "subject CN, the peer's identity (also the file name)")
	dns := fs.String("dns", "", "comma-separated DNS SANs")
	ips := fs.String("ip", "", "comma-separated IP SANs")
	days := fs.Int("days", int(certs.DefaultLeafValidity/(24*time.Hour)), "validity in days (never past the CA's)")
	server := fs.Bool("server", false, "for a TLS server (exporter; applier status endpoint)")
	client := fs.Bool("client", false, "for a TLS client (applier; operator tools)")
	dir := fs.String("out", "", "directory for NAME.pem and NAME-key.pem")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *caDir == "" || *name == "" || *dir == "" || fs.NArg() > 0 {
		return errors.New("issue: -ca DIR, -name NAME and -out DIR required, no arguments\n" + usage)
	}
	if strings.ContainsAny(*name, `/\`) {
		return fmt.Errorf("issue: -name %q: no path separators (it names the files)", *name)
	}
	if *days <= 0 {
		return errors.New("issue: -days must be positive")
	}
	req := certs.Request{Name: *name, DNS: split(*dns), Validity: time.Duration(*days) * 24 * time.Hour, Server: *server, Client: *client}
	for _, s := range split(*ips) {
		ip := net.ParseIP(s)
		if ip == nil {
			return fmt.Errorf("issue: -ip %q: not an IP address", s)
		}
		req.IPs = append(req.IPs, ip)
	}
	ca, err := certs.LoadCA(*caDir)
	if err != nil {
		return fmt.Errorf("issue: load CA: %w", err)
	}
	leaf, err := ca.Issue(req)
	if err != nil {
		return err
	}
	certPath, keyPath, err := leaf.WriteFiles(*dir, *name)
	if err != nil {
		return err
	}
	var sans []string
	for _, d := range leaf.Cert.DNSNames {
		sans = append(sans, "DNS:"+d)
	}
	for _, ip := range leaf.Cert.IPAddresses {
		sans = append(sans, "IP:"+ip.String())
	}
	var usages []string
	if req.Server || !req.Client {
		usages = append(usages, "server")
	}
	if req.Client || !req.Server {
		usages = append(usages, "client")
	}
	fmt.Fprintf(out, "%s (%s; %s) serial %x valid until %s: %s, key %s\n", *name, strings.Join(usages, "+"),
		strings.Join(sans, " "), leaf.Cert.SerialNumber, leaf.Cert.NotAfter.Format(time.RFC3339), certPath, keyPath)
	return nil
}

func split(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
