// vcsim: the govmomi vSphere API simulator, built from Debian's golang-github-vmware-govmomi-dev
// (which ships the simulator library but no vcsim main). Used by plugins/esx's tests and
// benches/esx_bench.sh; built offline in GOPATH mode (see plugins/esx/tests/it.rs).
//
// Prints VCSIM_URL=https://user:pass@HOST:PORT/sdk once listening; stops on SIGINT/SIGTERM.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"syscall"

	"github.com/vmware/govmomi/simulator"
)

func main() {
	listen := flag.String("l", "127.0.0.1:0", "listen address (port 0: a free port)")
	esx := flag.Bool("esx", false, "standalone ESX (ha-datacenter) instead of vCenter")
	useTLS := flag.Bool("tls", true, "serve https (self-signed certificate)")
	vms := flag.Int("vm", -1, "VMs per host and per cluster (model.Machine; -1: the model's default)")
	hosts := flag.Int("host", -1, "standalone hosts (model.Host; vCenter only)")
	clusters := flag.Int("cluster", -1, "clusters (model.Cluster; vCenter only)")
	user := flag.String("user", "user", "login user")
	pass := flag.String("pass", "pass", "login password")
	product := flag.String("product", "", "with -esx: 'gsx' makes the host say it is VMware Server 2.0 (GSX: productLineId gsx), the product libvirt's gsx:// connects to; the API stays ESX's")
	flag.Parse()

	model := simulator.VPX()
	if *esx {
		model = simulator.ESX()
	}
	switch *product {
	case "":
	case "gsx":
		if !*esx {
			fmt.Fprintln(os.Stderr, "vcsim: -product gsx needs -esx")
			os.Exit(2)
		}
		about := &model.ServiceContent.About
		about.Name = "VMware Server"
		about.FullName = "VMware Server 2.0.2 build-203138"
		about.Version = "2.0.2"
		about.Build = "203138"
		about.ProductLineId = "gsx"
		about.LicenseProductName = "VMware Server"
		about.LicenseProductVersion = "2.0"
	default:
		fmt.Fprintln(os.Stderr, "vcsim: unknown -product", *product)
		os.Exit(2)
	}
	if *vms >= 0 {
		model.Machine = *vms
	}
	if *hosts >= 0 && !*esx {
		model.Host = *hosts
	}
	if *clusters >= 0 && !*esx {
		model.Cluster = *clusters
	}
	if err := model.Create(); err != nil {
		fmt.Fprintln(os.Stderr, "vcsim:", err)
		os.Exit(1)
	}
	defer model.Remove()
	model.Service.Listen = &url.URL{Host: *listen, User: url.UserPassword(*user, *pass)}
	if *useTLS {
		model.Service.TLS = new(tls.Config)
	}
	s := model.Service.NewServer()
	defer s.Close()
	fmt.Printf("VCSIM_URL=%s\n", s.URL)
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	<-ch
}
