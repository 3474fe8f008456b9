package aibom

import (
	"bytes"
	"crypto/sha1" //nolint:gosec // a name-based (version 5) UUID is defined with SHA-1
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	cdx "github.com/CycloneDX/cyclonedx-go"
)

// Meta describes the document around the workloads.
type Meta struct {
	// Time is the BOM's metadata.timestamp; zero leaves it out (golden files).
	Time time.Time
	// ToolVersion is AgentTrail's version, named in metadata.tools.
	ToolVersion string
	// Sources name what the inventory was read from ("evidence /var/lib/agenttrail/evidence").
	Sources []string
	// Dropped is the inventory's Dropped, shown as properties so a reader knows the BOM is
	// incomplete.
	Dropped map[string]int
	// Inventory leaves out what changes with every span (agenttrail:observed.last, .spans), so
	// that the document, and its serial number, change only when the inventory does (the aibom
	// connector's records).
	Inventory bool
}

// Property names of this project (CycloneDX's registered agenttrail: namespace is ours alone).
const propPrefix = "agenttrail:"

// BOM builds the CycloneDX 1.6 document of workloads. Each workload is an application
// component; the models it called are machine-learning-model components, its SDKs and
// frameworks library or framework components (with a purl), the model APIs, tools, MCP servers
// and egress destinations are services; the dependencies say which workload uses what and which
// API served which model. bom-refs are stable names, so two BOMs of the same observations are
// byte-identical (serialNumber is a name-based UUID of the content).
func BOM(workloads []*Workload, meta Meta) *cdx.BOM {
	b := cdx.NewBOM()
	b.SpecVersion = cdx.SpecVersion1_6
	b.JSONSchema = "http://cyclonedx.org/schema/bom-1.6.schema.json" // NewBOM names the library's latest
	b.Version = 1
	md := &cdx.Metadata{
		Tools: &cdx.ToolsChoice{Components: &[]cdx.Component{{
			Type: cdx.ComponentTypeApplication, Group: "agenttrail", Name: "agenttrail", Version: meta.ToolVersion,
			Description: "runtime AI-BOM from eBPF-observed spans (agenttrail aibom)",
		}}},
	}
	var props []cdx.Property
	for _, s := range meta.Sources {
		props = append(props, prop("source", s))
	}
	for _, r := range sortedKeysInt(meta.Dropped) {
		props = append(props, prop("dropped."+r, strconv.Itoa(meta.Dropped[r])))
	}
	if len(props) > 0 {
		md.Properties = &props
	}
	b.Metadata = md

	var comps []cdx.Component
	var svcs []cdx.Service
	deps := map[string]map[string]bool{}
	dep := func(from, to string) {
		if deps[from] == nil {
			deps[from] = map[string]bool{}
		}
		deps[from][to] = true
	}
	occ := map[string][]cdx.EvidenceOccurrence{} // where each package was seen, by component
	seenComp := map[string]bool{}
	seenSvc := map[string]bool{}
	addComp := func(c cdx.Component) {
		if !seenComp[c.BOMRef] {
			seenComp[c.BOMRef] = true
			comps = append(comps, c)
		}
	}
	addSvc := func(s cdx.Service) {
		if !seenSvc[s.BOMRef] {
			seenSvc[s.BOMRef] = true
			svcs = append(svcs, s)
		}
	}

	for _, w := range workloads {
		wref := "workload:" + w.Key
		deps[wref] = map[string]bool{}
		addComp(workloadComponent(w, wref, meta.Inventory))

		for _, k := range sortedMapKeys(w.Models) {
			m := w.Models[k]
			ref := modelRef(m.Provider, m.Name)
			c := cdx.Component{BOMRef: ref, Type: cdx.ComponentTypeMachineLearningModel, Name: m.Name}
			if m.Provider != "" {
				c.Group = m.Provider
				c.Publisher = m.Provider
			}
			// The model component is shared by the workloads that use it; which workload saw
			// which response model is on the workload's dependency, so only stable facts here.
			var mp []cdx.Property
			if m.Provider != "" {
				mp = append(mp, cdx.Property{Name: "gen_ai.provider.name", Value: m.Provider})
			}
			if len(mp) > 0 {
				c.Properties = &mp
			}
			addComp(c)
			dep(wref, ref)
		}
		for _, k := range sortedMapKeys(w.Endpoints) {
			e := w.Endpoints[k]
			ref := "model-api:" + hostPort(e.Address, e.Port)
			s := cdx.Service{BOMRef: ref, Name: hostPort(e.Address, e.Port), Group: e.Provider,
				Description: "model API", CrossesTrustBoundary: boolPtr(true)}
			if e.Provider != "" {
				s.Provider = &cdx.OrganizationalEntity{Name: e.Provider}
			}
			if e.URL != "" {
				s.Endpoints = &[]string{e.URL}
			}
			sp := []cdx.Property{prop("server.address", e.Address)}
			if e.Port != 0 {
				sp = append(sp, prop("server.port", strconv.Itoa(e.Port)))
			}
			s.Properties = &sp
			addSvc(s)
			dep(wref, ref)
			for _, mk := range sortedKeys(e.Models) {
				if m := w.Models[mk]; m != nil {
					dep(ref, modelRef(m.Provider, m.Name))
				}
			}
		}
		for _, k := range sortedMapKeys(w.MCPServers) {
			ms := w.MCPServers[k]
			ref := "mcp-server:" + ms.Name
			s := cdx.Service{BOMRef: ref, Name: ms.Name, Version: ms.Version, Description: "MCP server"}
			if ms.Address != "" {
				s.Properties = &[]cdx.Property{prop("server.address", ms.Address)}
			}
			var tools []cdx.Service
			for _, tn := range sortedKeys(ms.Tools) {
				tools = append(tools, cdx.Service{BOMRef: ref + "/tool:" + tn, Name: tn, Description: "MCP tool"})
				dep(ref, ref+"/tool:"+tn)
			}
			if len(tools) > 0 {
				s.Services = &tools
			}
			addSvc(s)
			dep(wref, ref)
		}
		for _, k := range sortedMapKeys(w.Tools) {
			t := w.Tools[k]
			if t.MCPServer != "" {
				dep(wref, "mcp-server:"+t.MCPServer+"/tool:"+t.Name)
				continue
			}
			// A function tool is code of the workload itself: its ref is the workload's.
			ref := wref + "/tool:" + t.Name
			s := cdx.Service{BOMRef: ref, Name: t.Name, Description: "function tool",
				CrossesTrustBoundary: boolPtr(false)}
			tp := []cdx.Property{prop("tool.executed", strconv.FormatBool(t.Executed)),
				prop("tool.requested_by_model", strconv.FormatBool(t.Requested))}
			s.Properties = &tp
			addSvc(s)
			dep(wref, ref)
		}
		for _, k := range sortedMapKeys(w.Packages) {
			p := w.Packages[k]
			c := packageComponent(p)
			addComp(c)
			dep(wref, c.BOMRef)
			if p.Location != "" {
				occ[c.BOMRef] = append(occ[c.BOMRef], cdx.EvidenceOccurrence{Location: p.Location, AdditionalContext: p.Evidence + " (workload " + w.Key + ")"})
			}
		}
		for _, k := range sortedMapKeys(w.Egress) {
			d := w.Egress[k]
			hp := hostPort(d.Address, d.Port)
			ref := "egress:" + hp
			name := hp
			if d.Host != "" {
				name = hostPort(d.Host, d.Port)
			}
			s := cdx.Service{BOMRef: ref, Name: name, Description: "egress destination",
				Endpoints: &[]string{"tcp://" + hp}, CrossesTrustBoundary: boolPtr(true)}
			ep := []cdx.Property{prop("network.peer.address", d.Address), prop("network.peer.port", strconv.Itoa(d.Port))}
			if d.Host != "" {
				ep = append(ep, prop("server.address", d.Host))
			}
			s.Properties = &ep
			addSvc(s)
			dep(wref, ref)
		}
	}
	for i := range comps {
		if o := occ[comps[i].BOMRef]; len(o) > 0 {
			slices.SortFunc(o, func(a, b cdx.EvidenceOccurrence) int {
				return strings.Compare(a.Location+a.AdditionalContext, b.Location+b.AdditionalContext)
			})
			o = slices.Compact(o)
			comps[i].Evidence = &cdx.Evidence{Occurrences: &o}
		}
	}
	if len(comps) > 0 {
		b.Components = &comps
	}
	if len(svcs) > 0 {
		b.Services = &svcs
	}
	var ds []cdx.Dependency
	for _, from := range sortedMapKeys(deps) {
		to := sortedKeys(deps[from])
		d := cdx.Dependency{Ref: from}
		if len(to) > 0 {
			d.Dependencies = &to
		}
		ds = append(ds, d)
	}
	// Every component and service is in the graph, those that depend on nothing too.
	for _, c := range comps {
		if deps[c.BOMRef] == nil {
			ds = append(ds, cdx.Dependency{Ref: c.BOMRef})
		}
	}
	for _, s := range svcs {
		if deps[s.BOMRef] == nil {
			ds = append(ds, cdx.Dependency{Ref: s.BOMRef})
		}
	}
	slices.SortFunc(ds, func(a, b cdx.Dependency) int { return strings.Compare(a.Ref, b.Ref) })
	if len(ds) > 0 {
		b.Dependencies = &ds
	}
	b.SerialNumber = serialNumber(b)
	if !meta.Time.IsZero() {
		b.Metadata.Timestamp = meta.Time.UTC().Format(time.RFC3339)
	}
	return b
}

func workloadComponent(w *Workload, ref string, inventory bool) cdx.Component {
	id := w.Identity
	name := ""
	for _, k := range []string{"k8s.deployment.name", "k8s.statefulset.name", "k8s.daemonset.name", "k8s.cronjob.name", "k8s.job.name", "service.name"} {
		if id[k] != "" {
			name = id[k]
			break
		}
	}
	if name == "" {
		name = w.Key
	}
	c := cdx.Component{BOMRef: ref, Type: cdx.ComponentTypeApplication, Name: name, Group: id["k8s.namespace.name"],
		Version: id["agenttrail.go.main.version"]}
	if c.Version == "(devel)" {
		c.Version = ""
	}
	props := []cdx.Property{prop("workload.key", w.Key)}
	for _, k := range sortedKeys(identitySet(id)) {
		props = append(props, cdx.Property{Name: k, Value: id[k]})
	}
	for _, e := range sortedKeys(w.Executables) {
		props = append(props, cdx.Property{Name: "process.executable.path", Value: e})
	}
	for _, t := range sortedKeys(w.TLS) {
		props = append(props, prop("capture.tls", t))
	}
	for _, s := range sortedKeys(w.Sources) {
		props = append(props, prop("observed.source", s))
	}
	if !w.FirstSeen.IsZero() && !inventory {
		props = append(props, prop("observed.first", w.FirstSeen.UTC().Format(time.RFC3339Nano)),
			prop("observed.last", w.LastSeen.UTC().Format(time.RFC3339Nano)))
	}
	if !inventory {
		props = append(props, prop("observed.spans", strconv.Itoa(w.Spans)))
	}
	for _, k := range sortedMapKeys(w.Models) {
		for _, rm := range sortedKeys(w.Models[k].ResponseModels) {
			props = append(props, prop("model.response", w.Models[k].Name+" -> "+rm))
		}
	}
	for _, n := range sortedKeys(w.Notes) {
		props = append(props, prop("note", n))
	}
	c.Properties = &props
	return c
}

// identitySet is the identity keys except process.executable.path, listed once per executable.
func identitySet(id map[string]string) map[string]bool {
	out := map[string]bool{}
	for k := range id {
		if k != "process.executable.path" && !strings.HasPrefix(k, "agenttrail.go.main") {
			out[k] = true
		}
	}
	if id["agenttrail.go.main"] != "" {
		out["agenttrail.go.main"] = true
	}
	return out
}

func packageComponent(p *Package) cdx.Component {
	typ := cdx.ComponentTypeLibrary
	if p.Kind == kindFramework {
		typ = cdx.ComponentTypeFramework
	}
	purl := purlOf(p)
	c := cdx.Component{BOMRef: purl, Type: typ, Name: p.Name, Version: p.Version, PackageURL: purl}
	if p.Ecosystem == "npm" {
		if scope, name, ok := strings.Cut(p.Name, "/"); ok && strings.HasPrefix(scope, "@") {
			c.Group, c.Name = scope, name
		}
	}
	if p.Version == "" {
		// The component is shared by workloads; what each saw is the same fact: unknown version.
		c.Properties = &[]cdx.Property{prop("version", "not shown by the process")}
	}
	return c
}

// purlOf is the package URL (github.com/package-url/purl-spec) of a package.
func purlOf(p *Package) string {
	var name string
	switch p.Ecosystem {
	case "npm":
		if scope, n, ok := strings.Cut(p.Name, "/"); ok && strings.HasPrefix(scope, "@") {
			name = "%40" + url.PathEscape(scope[1:]) + "/" + url.PathEscape(n)
		} else {
			name = url.PathEscape(p.Name)
		}
	case "golang":
		parts := strings.Split(p.Name, "/")
		for i := range parts {
			parts[i] = url.PathEscape(parts[i])
		}
		name = strings.Join(parts, "/")
	default:
		name = url.PathEscape(p.Name)
	}
	s := "pkg:" + p.Ecosystem + "/" + name
	if p.Version != "" {
		s += "@" + url.PathEscape(p.Version)
	}
	return s
}

func modelRef(provider, name string) string {
	if provider == "" {
		provider = "unknown"
	}
	return "model:" + provider + "/" + name
}

func prop(name, value string) cdx.Property {
	return cdx.Property{Name: propPrefix + name, Value: value}
}

func boolPtr(b bool) *bool { return &b }

// serialNumber is a version 5 UUID of the document without its serial number and timestamp:
// the same observations give the same serial number, a change gives another.
func serialNumber(b *cdx.BOM) string {
	var buf bytes.Buffer
	_ = Encode(&buf, b) // encoding an in-memory BOM into a buffer does not fail
	h := sha1.New()     //nolint:gosec
	h.Write([]byte("agenttrail.aibom.v1\x00"))
	h.Write(buf.Bytes())
	u := h.Sum(nil)[:16]
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return fmt.Sprintf("urn:uuid:%x-%x-%x-%x-%x", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// Encode writes b, built for CycloneDX 1.6 by BOM, as indented JSON. (EncodeVersion would
// deep-copy the document through encoding/gob to convert it: 15 ms per document of the
// fixture, for a conversion a document already at 1.6 does not need.)
func Encode(w io.Writer, b *cdx.BOM) error {
	if b.SpecVersion != cdx.SpecVersion1_6 {
		return fmt.Errorf("aibom: the document is CycloneDX %s, not 1.6", b.SpecVersion)
	}
	enc := cdx.NewBOMEncoder(w, cdx.BOMFileFormatJSON)
	enc.SetPretty(true)
	enc.SetEscapeHTML(false)
	return enc.Encode(b)
}

func sortedMapKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func sortedKeysInt(m map[string]int) []string { return sortedMapKeys(m) }
