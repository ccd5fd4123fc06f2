// golibvirt drives a libvirt daemon over TCP with DigitalOcean's pure-Go client
// (github.com/digitalocean/go-libvirt, which speaks the remote protocol itself, without
// libvirt's C library), the way its README shows a new user: dial, New, ConnectToURI, calls.
//
// Usage: golibvirt HOST:PORT URI
//
// For test:///default it reads the default objects, defines, starts, destroys and
// undefines a domain while a lifecycle event subscription watches, and looks up a
// missing domain; for any other URI it only reads. Every line it prints is an answer of
// the daemon; lines starting with "~ " hold values that differ between daemons (host
// name, versions). Any failure prints "FAIL ..." and exits 1.
package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/digitalocean/go-libvirt"
)

const demoName = "golibvirt-demo"

const demoXML = `<domain type='test'><name>golibvirt-demo</name>` +
	`<memory unit='KiB'>131072</memory><vcpu>1</vcpu>` +
	`<os><type arch='x86_64'>hvm</type></os></domain>`

func fail(what string, err error) {
	fmt.Printf("FAIL %s: %v\n", what, err)
	os.Exit(1)
}

var lifecycleNames = []string{"defined", "undefined", "started", "suspended", "resumed",
	"stopped", "shutdown", "pmsuspended", "crashed"}

func eventName(e int32) string {
	if e >= 0 && int(e) < len(lifecycleNames) {
		return lifecycleNames[e]
	}
	return fmt.Sprintf("event-%d", e)
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: golibvirt HOST:PORT URI")
		os.Exit(2)
	}
	addr, uri := os.Args[1], os.Args[2]
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		fail("dial", err)
	}
	l := libvirt.New(c)
	if err := l.ConnectToURI(libvirt.ConnectURI(uri)); err != nil {
		fail("connect", err)
	}
	fmt.Printf("connected %s\n", uri)

	lib, err := l.ConnectGetLibVersion()
	if err != nil {
		fail("ConnectGetLibVersion", err)
	}
	fmt.Printf("~ libversion %d.%d.%d\n", lib/1000000, lib/1000%1000, lib%1000)
	if lib == 0 {
		fail("ConnectGetLibVersion", errors.New("version 0"))
	}
	host, err := l.ConnectGetHostname()
	if err != nil {
		fail("ConnectGetHostname", err)
	}
	fmt.Printf("~ hostname %s\n", host)
	if host == "" {
		fail("ConnectGetHostname", errors.New("empty host name"))
	}
	// the README's example: Version and Domains
	v, err := l.Version()
	if err != nil {
		fail("Version", err)
	}
	fmt.Printf("~ version %s\n", v)
	readme, err := l.Domains()
	if err != nil {
		fail("Domains", err)
	}
	var names []string
	for _, d := range readme {
		names = append(names, d.Name)
	}
	sort.Strings(names)
	fmt.Printf("readme domains [%s]\n", strings.Join(names, " "))

	doms, _, err := l.ConnectListAllDomains(1, 0)
	if err != nil {
		fail("ConnectListAllDomains", err)
	}
	names = nil
	for _, d := range doms {
		names = append(names, d.Name)
	}
	sort.Strings(names)
	fmt.Printf("domains [%s]\n", strings.Join(names, " "))

	pools, _, err := l.ConnectListAllStoragePools(1, 0)
	if err != nil {
		fail("ConnectListAllStoragePools", err)
	}
	names = nil
	for _, p := range pools {
		names = append(names, p.Name)
	}
	sort.Strings(names)
	fmt.Printf("storage pools [%s]\n", strings.Join(names, " "))

	nets, _, err := l.ConnectListAllNetworks(1, 0)
	if err != nil {
		fail("ConnectListAllNetworks", err)
	}
	names = nil
	for _, n := range nets {
		names = append(names, n.Name)
	}
	sort.Strings(names)
	fmt.Printf("networks [%s]\n", strings.Join(names, " "))

	// a missing domain: libvirt's VIR_ERR_NO_DOMAIN (42)
	_, err = l.DomainLookupByName("golibvirt-no-such-domain")
	var lerr libvirt.Error
	if !errors.As(err, &lerr) {
		fail("DomainLookupByName of a missing domain", fmt.Errorf("not a libvirt error: %v", err))
	}
	fmt.Printf("missing domain: code %d not-found %v\n", lerr.Code, libvirt.IsNotFound(err))

	if uri == string(libvirt.TestDefault) {
		testDriver(l)
	}

	if err := l.Disconnect(); err != nil {
		fail("Disconnect", err)
	}
	fmt.Println("disconnected")
}

func info(l *libvirt.Libvirt, d libvirt.Domain) {
	state, maxMem, mem, vcpus, _, err := l.DomainGetInfo(d)
	if err != nil {
		fail("DomainGetInfo", err)
	}
	fmt.Printf("info %s: state %d maxmem %d KiB memory %d KiB vcpus %d\n",
		d.Name, state, maxMem, mem, vcpus)
}

func testDriver(l *libvirt.Libvirt) {
	d, err := l.DomainLookupByName("test")
	if err != nil {
		fail("DomainLookupByName test", err)
	}
	fmt.Printf("lookup %s id %d\n", d.Name, d.ID)
	info(l, d)
	xml, err := l.DomainGetXMLDesc(d, 0)
	if err != nil {
		fail("DomainGetXMLDesc", err)
	}
	fmt.Printf("xml of test names it: %v\n", strings.Contains(xml, "<name>test</name>"))

	ctx, cancel := context.WithCancel(context.Background())
	events, err := l.LifecycleEvents(ctx)
	if err != nil {
		fail("LifecycleEvents", err)
	}
	fmt.Println("subscribed to lifecycle events")

	demo, err := l.DomainDefineXML(demoXML)
	if err != nil {
		fail("DomainDefineXML", err)
	}
	fmt.Printf("defined %s\n", demo.Name)
	if err := l.DomainCreate(demo); err != nil {
		fail("DomainCreate", err)
	}
	fmt.Println("created")
	info(l, demo)
	if err := l.DomainDestroy(demo); err != nil {
		fail("DomainDestroy", err)
	}
	fmt.Println("destroyed")
	if err := l.DomainUndefine(demo); err != nil {
		fail("DomainUndefine", err)
	}
	fmt.Println("undefined")
	if _, err := l.DomainLookupByName(demoName); !libvirt.IsNotFound(err) {
		fail("DomainLookupByName after undefine", fmt.Errorf("want not found, got %v", err))
	}

	// the four lifecycle events of the demo domain, in order
	want := []string{"defined", "started", "stopped", "undefined"}
	var seen []string
	timeout := time.After(10 * time.Second)
	for len(seen) < len(want) {
		select {
		case ev, ok := <-events:
			if !ok {
				fail("lifecycle events", errors.New("stream closed"))
			}
			if ev.Dom.Name != demoName {
				continue
			}
			seen = append(seen, eventName(ev.Event))
			fmt.Printf("event %s %s detail %d\n", ev.Dom.Name, eventName(ev.Event), ev.Detail)
		case <-timeout:
			fail("lifecycle events", fmt.Errorf("got %v of %v within 10 s", seen, want))
		}
	}
	if strings.Join(seen, " ") != strings.Join(want, " ") {
		fail("lifecycle events", fmt.Errorf("got %v, want %v", seen, want))
	}
	cancel()
	// the subscription's goroutine deregisters its callback once cancelled
	time.Sleep(200 * time.Millisecond)
}
