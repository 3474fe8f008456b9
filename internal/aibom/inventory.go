// Package aibom builds AgentTrail's runtime AI bill of materials: per workload, what was
// observed at run time — the models and providers it called and at which endpoints, the tools
// it ran (function tools, MCP servers and their tools), the AI SDKs and frameworks it loaded,
// with versions where the process shows them, where it connected to, and its Kubernetes
// identity — as a CycloneDX 1.6 document.
//
// An Inventory is fed spans (the evidence archive's stories, or a live pipeline) and profiles;
// every string in them came from a traced process and is bounded here before it is kept, and
// what is dropped is counted by reason.
package aibom // import "github.com/agenttrail/agenttrail/internal/aibom"

import (
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/collector/pdata/pcommon"
	"go.opentelemetry.io/collector/pdata/ptrace"
)

// Bounds of an inventory. Spans come from traced processes: a workload that invents a new model
// name, tool or destination per request must not grow the inventory without end.
const (
	DefaultMaxWorkloads = 1000
	DefaultMaxEntries   = 256      // per category (models, endpoints, tools, packages, destinations) of one workload
	maxString           = 512      // bytes of a name, address, path or version kept
	maxScan             = 64 << 10 // bytes of one attribute scanned for package paths (a stack trace)
)

// Drop reasons, the `reason` of what an inventory did not keep.
const (
	DropWorkloads = "workloads_full" // a new workload past MaxWorkloads
	DropEntries   = "entries_full"   // a new entry past MaxEntries in one category
	DropTooLong   = "too_long"       // a name or address longer than maxString
	DropScanLimit = "scan_limit"     // an attribute longer than maxScan, scanned only up to it
)

// Identity attributes copied from a span's resource onto its workload.
var identityKeys = []string{
	"service.name", "process.executable.path", "process.runtime.name", "process.runtime.version",
	"container.image.name", "container.image.tag",
	"k8s.cluster.name", "k8s.namespace.name", "k8s.deployment.name", "k8s.statefulset.name",
	"k8s.daemonset.name", "k8s.cronjob.name", "k8s.job.name", "k8s.container.name",
	"k8s.pod.service_account.name",
}

// Options configure an Inventory.
type Options struct {
	MaxWorkloads int // 0: DefaultMaxWorkloads
	MaxEntries   int // 0: DefaultMaxEntries
}

// Inventory is what was observed, per workload. It is not safe for concurrent use.
type Inventory struct {
	maxWorkloads, maxEntries int
	workloads                map[string]*Workload
	// Dropped counts what was not kept, by reason (Drop*).
	Dropped map[string]int
}

// New returns an empty inventory.
func New(opts Options) *Inventory {
	if opts.MaxWorkloads <= 0 {
		opts.MaxWorkloads = DefaultMaxWorkloads
	}
	if opts.MaxEntries <= 0 {
		opts.MaxEntries = DefaultMaxEntries
	}
	return &Inventory{maxWorkloads: opts.MaxWorkloads, maxEntries: opts.MaxEntries,
		workloads: map[string]*Workload{}, Dropped: map[string]int{}}
}

// Workload is what was observed of one workload.
type Workload struct {
	// Key is the workload key of the attackstory processor's profiles: namespace/controller/
	// container in Kubernetes, else "service.name executable".
	Key string
	// Identity holds the identity attributes (identityKeys) as first seen.
	Identity map[string]string
	// Executables are the process.executable.path values of the workload's processes.
	Executables map[string]bool
	Models      map[string]*Model       // by provider + "/" + name
	Endpoints   map[string]*Endpoint    // model API endpoints, by host:port
	Tools       map[string]*Tool        // by MCP server + "/" + name ("" server: a function tool)
	MCPServers  map[string]*MCPServer   // by name
	Packages    map[string]*Package     // by ecosystem + "/" + name
	Egress      map[string]*Destination // by address:port
	TLS         map[string]bool         // agenttrail.capture.tls values
	Sources     map[string]bool         // "evidence", "profile", "spans"
	FirstSeen   time.Time
	LastSeen    time.Time
	Spans       int
	// Notes say what could not be learned (an executable that could not be read here).
	Notes map[string]bool
}

// Model is a model the workload asked for.
type Model struct {
	Provider       string
	Name           string
	ResponseModels map[string]bool // gen_ai.response.model values
	Endpoints      map[string]bool // host:port it was asked at
	Calls          int
}

// Endpoint is where a model API was called.
type Endpoint struct {
	Address  string
	Port     int
	URL      string // scheme://host:port from url.full, when a span had it
	Provider string
	Models   map[string]bool // Models keys
}

// Tool is a tool the workload ran, or that its model asked it to run.
type Tool struct {
	Name      string
	MCPServer string // "" for a function tool
	Executed  bool   // an execute_tool span ran it
	Requested bool   // a model response asked for it (agenttrail.tool_calls.names)
}

// MCPServer is an MCP server the workload used.
type MCPServer struct {
	Name    string
	Version string // mcp.server.version, as the server's initialize result said
	Address string // server.address[:port], when spans have it
	Tools   map[string]bool
}

// Package is an SDK or framework the process showed.
type Package struct {
	Ecosystem string // golang, pypi, npm
	Name      string
	Version   string // "" when the process did not show it
	Kind      string // framework or library
	// Evidence says how name and version were found (evidence* constants), Location where.
	Evidence string
	Location string
	// Root is the folder the package was loaded from (Python's site-packages, Node's
	// node_modules), so that its version can be read on a host that has it.
	Root string
}

// Destination is an address the workload connected to.
type Destination struct {
	Address string
	Port    int
	Host    string // server.address when a span named it
}

func (inv *Inventory) drop(reason string) { inv.Dropped[reason]++ }

// bounded returns s if it is at most maxString bytes, else counts it.
func (inv *Inventory) bounded(s string) (string, bool) {
	if len(s) > maxString {
		inv.drop(DropTooLong)
		return "", false
	}
	return s, s != ""
}

// room tells whether a map of n entries may take one more, counting a refusal.
func (inv *Inventory) room(n int) bool {
	if n >= inv.maxEntries {
		inv.drop(DropEntries)
		return false
	}
	return true
}

// WorkloadKey is the workload key of a resource, as the attackstory processor keys profiles.
func WorkloadKey(res pcommon.Map) string {
	get := func(k string) string { return str(res, k) }
	if ns := get("k8s.namespace.name"); ns != "" {
		for _, k := range []string{"k8s.deployment.name", "k8s.statefulset.name", "k8s.daemonset.name"} {
			if name := get(k); name != "" {
				return ns + "/" + name + "/" + get("k8s.container.name")
			}
		}
	}
	return get("service.name") + " " + get("process.executable.path")
}

// workload returns the workload of key, creating it if there is room.
func (inv *Inventory) workload(key string, identity map[string]string) (*Workload, bool) {
	if w := inv.workloads[key]; w != nil {
		return w, false
	}
	if len(key) > 4*maxString {
		inv.drop(DropTooLong)
		return nil, false
	}
	if len(inv.workloads) >= inv.maxWorkloads {
		inv.drop(DropWorkloads)
		return nil, false
	}
	w := &Workload{Key: key, Identity: map[string]string{}, Executables: map[string]bool{},
		Models: map[string]*Model{}, Endpoints: map[string]*Endpoint{}, Tools: map[string]*Tool{},
		MCPServers: map[string]*MCPServer{}, Packages: map[string]*Package{}, Egress: map[string]*Destination{},
		TLS: map[string]bool{}, Sources: map[string]bool{}, Notes: map[string]bool{}}
	for k, v := range identity {
		if v, ok := inv.bounded(v); ok {
			w.Identity[k] = v
		}
	}
	inv.workloads[key] = w
	return w, true
}

// Workloads returns the workloads in key order.
func (inv *Inventory) Workloads() []*Workload {
	return slices.SortedFunc(maps.Values(inv.workloads), func(a, b *Workload) int { return strings.Compare(a.Key, b.Key) })
}

// Workload returns the workload of key, or nil.
func (inv *Inventory) Workload(key string) *Workload { return inv.workloads[key] }

// AddTraces records what the spans of td show, each under the workload of its resource, and
// returns the keys of the workloads whose inventory changed (a new model, tool, package,
// destination, identity; not merely a later time or another span of the same).
func (inv *Inventory) AddTraces(td ptrace.Traces, source string) []string {
	changed := map[string]bool{}
	for i := 0; i < td.ResourceSpans().Len(); i++ {
		rs := td.ResourceSpans().At(i)
		res := rs.Resource().Attributes()
		identity := map[string]string{}
		for _, k := range identityKeys {
			if v, ok := res.Get(k); ok && v.AsString() != "" {
				identity[k] = v.AsString()
			}
		}
		w, isNew := inv.workload(WorkloadKey(res), identity)
		if w == nil {
			continue
		}
		o := observer{inv: inv, w: w, changed: isNew}
		o.flag(w.Sources, source)
		// A workload seen first through a profile gets the identity its spans add.
		for k, v := range identity {
			if _, ok := w.Identity[k]; !ok {
				if v, ok := inv.bounded(v); ok {
					w.Identity[k] = v
					o.changed = true
				}
			}
		}
		if v, ok := res.Get("process.executable.path"); ok {
			o.flag(w.Executables, v.AsString())
		}
		if v, ok := res.Get("agenttrail.capture.tls"); ok {
			o.flag(w.TLS, v.AsString())
		}
		for j := 0; j < rs.ScopeSpans().Len(); j++ {
			spans := rs.ScopeSpans().At(j).Spans()
			for k := 0; k < spans.Len(); k++ {
				o.span(spans.At(k))
			}
		}
		if o.changed {
			changed[w.Key] = true
		}
	}
	return slices.Sorted(maps.Keys(changed))
}

// observer records the spans of one resource into its workload.
type observer struct {
	inv     *Inventory
	w       *Workload
	changed bool
}

// flag adds v to a set, bounded.
func (o *observer) flag(set map[string]bool, v string) {
	v, ok := o.inv.bounded(v)
	if !ok || set[v] {
		return
	}
	if o.inv.room(len(set)) {
		set[v] = true
		o.changed = true
	}
}

func str(m pcommon.Map, k string) string {
	v, ok := m.Get(k)
	if !ok {
		return ""
	}
	return v.AsString()
}

func (o *observer) span(sp ptrace.Span) {
	w := o.w
	w.Spans++
	if t := sp.StartTimestamp().AsTime(); sp.StartTimestamp() != 0 && (w.FirstSeen.IsZero() || t.Before(w.FirstSeen)) {
		w.FirstSeen = t
	}
	if t := sp.EndTimestamp().AsTime(); sp.EndTimestamp() != 0 && t.After(w.LastSeen) {
		w.LastSeen = t
	}
	attrs := sp.Attributes()
	op := str(attrs, "gen_ai.operation.name")
	switch {
	case op == "chat" || op == "text_completion" || op == "generate_content" || op == "embeddings" ||
		str(attrs, "gen_ai.request.model") != "":
		o.inference(attrs)
	case op == "execute_tool":
		o.tool(attrs)
	}
	if names, ok := attrs.Get("agenttrail.tool_calls.names"); ok {
		o.requestedTools(names)
	}
	if sp.Kind() == ptrace.SpanKindClient || sp.Name() == "connect" {
		o.egress(attrs)
	}
	o.packagePaths(attrs)
	for i := 0; i < sp.Events().Len(); i++ {
		ev := sp.Events().At(i)
		if ev.Name() == "socket.connect" || ev.Name() == "connect" {
			o.egress(ev.Attributes())
		}
		o.packagePaths(ev.Attributes())
	}
}

func provider(attrs pcommon.Map) string {
	if p := str(attrs, "gen_ai.provider.name"); p != "" {
		return p
	}
	return str(attrs, "gen_ai.system") // the name before semantic conventions 1.37
}

func port(attrs pcommon.Map, k string) int {
	v, ok := attrs.Get(k)
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(v.AsString())
	if err != nil || n < 0 || n > 65535 {
		return 0
	}
	return n
}

func hostPort(addr string, port int) string {
	if port == 0 {
		return addr
	}
	if strings.Contains(addr, ":") {
		return "[" + addr + "]:" + strconv.Itoa(port)
	}
	return addr + ":" + strconv.Itoa(port)
}

func (o *observer) inference(attrs pcommon.Map) {
	inv, w := o.inv, o.w
	prov, _ := inv.bounded(provider(attrs))
	name, ok := inv.bounded(str(attrs, "gen_ai.request.model"))
	if !ok {
		name, ok = inv.bounded(str(attrs, "gen_ai.response.model"))
	}
	var ep *Endpoint
	addr, hasAddr := inv.bounded(str(attrs, "server.address"))
	if hasAddr {
		p := port(attrs, "server.port")
		key := hostPort(addr, p)
		ep = w.Endpoints[key]
		if ep == nil && inv.room(len(w.Endpoints)) {
			ep = &Endpoint{Address: addr, Port: p, Provider: prov, Models: map[string]bool{}}
			w.Endpoints[key] = ep
			o.changed = true
		}
		if ep != nil && ep.URL == "" {
			if u := baseURL(str(attrs, "url.full")); u != "" {
				ep.URL = u
				o.changed = true
			}
		}
		if ep != nil && ep.Provider == "" && prov != "" {
			ep.Provider = prov
			o.changed = true
		}
	}
	if !ok {
		return
	}
	key := prov + "/" + name
	m := w.Models[key]
	if m == nil {
		if !inv.room(len(w.Models)) {
			return
		}
		m = &Model{Provider: prov, Name: name, ResponseModels: map[string]bool{}, Endpoints: map[string]bool{}}
		w.Models[key] = m
		o.changed = true
	}
	m.Calls++
	if rm := str(attrs, "gen_ai.response.model"); rm != "" && rm != name {
		o.flag(m.ResponseModels, rm)
	}
	if ep != nil {
		o.flag(m.Endpoints, hostPort(ep.Address, ep.Port))
		o.flag(ep.Models, key)
	}
}

// baseURL is scheme://host[:port] of an absolute http(s) URL, "" otherwise.
func baseURL(u string) string {
	if len(u) > maxString {
		return ""
	}
	scheme, rest, ok := strings.Cut(u, "://")
	if !ok || (scheme != "http" && scheme != "https") {
		return ""
	}
	host := rest
	if i := strings.IndexAny(rest, "/?#"); i >= 0 {
		host = rest[:i]
	}
	if host == "" || strings.ContainsAny(host, "@ \t\r\n\\") {
		return "" // userinfo is a credential: never copy it
	}
	return scheme + "://" + host
}

func (o *observer) tool(attrs pcommon.Map) {
	inv, w := o.inv, o.w
	name, ok := inv.bounded(str(attrs, "gen_ai.tool.name"))
	if !ok {
		return
	}
	server, _ := inv.bounded(str(attrs, "mcp.server.name"))
	if server == "" && str(attrs, "mcp.method.name") != "" {
		// An MCP call without a server name is named after where it went.
		server, _ = inv.bounded(hostPort(str(attrs, "server.address"), port(attrs, "server.port")))
		if server == "" {
			server = "(unnamed MCP server)"
		}
	}
	o.addTool(name, server, true)
	if server == "" {
		return
	}
	s := w.MCPServers[server]
	if s == nil {
		if !inv.room(len(w.MCPServers)) {
			return
		}
		s = &MCPServer{Name: server, Tools: map[string]bool{}}
		w.MCPServers[server] = s
		o.changed = true
	}
	if s.Version == "" {
		if v, ok := inv.bounded(str(attrs, "mcp.server.version")); ok {
			s.Version = v
			o.changed = true
		}
	}
	if s.Address == "" {
		if a, ok := inv.bounded(str(attrs, "server.address")); ok {
			s.Address = hostPort(a, port(attrs, "server.port"))
			o.changed = true
		}
	}
	o.flag(s.Tools, name)
}

func (o *observer) addTool(name, server string, executed bool) {
	key := server + "/" + name
	t := o.w.Tools[key]
	if t == nil {
		if !o.inv.room(len(o.w.Tools)) {
			return
		}
		t = &Tool{Name: name, MCPServer: server}
		o.w.Tools[key] = t
		o.changed = true
	}
	if executed && !t.Executed {
		t.Executed, o.changed = true, true
	}
	if !executed && !t.Requested {
		t.Requested, o.changed = true, true
	}
}

func (o *observer) requestedTools(v pcommon.Value) {
	var names []string
	switch v.Type() {
	case pcommon.ValueTypeSlice:
		for i := 0; i < v.Slice().Len() && i < o.inv.maxEntries; i++ {
			names = append(names, v.Slice().At(i).AsString())
		}
	default:
		names = strings.Split(v.AsString(), ",")
	}
	for _, n := range names {
		if n, ok := o.inv.bounded(strings.TrimSpace(n)); ok {
			// A tool the model asked for and the agent then ran over MCP is the MCP tool.
			if !o.isMCPTool(n) {
				o.addTool(n, "", false)
			}
		}
	}
}

func (o *observer) isMCPTool(name string) bool {
	for _, s := range o.w.MCPServers {
		if s.Tools[name] {
			return true
		}
	}
	return false
}

func (o *observer) egress(attrs pcommon.Map) {
	inv, w := o.inv, o.w
	addr, ok := inv.bounded(str(attrs, "network.peer.address"))
	if !ok {
		return
	}
	if r := str(attrs, "agenttrail.syscall.result"); r != "" && r != "0" && !strings.EqualFold(r, "EINPROGRESS") {
		return // a connect that failed went nowhere
	}
	p := port(attrs, "network.peer.port")
	key := hostPort(addr, p)
	d := w.Egress[key]
	if d == nil {
		if !inv.room(len(w.Egress)) {
			return
		}
		d = &Destination{Address: addr, Port: p}
		w.Egress[key] = d
		o.changed = true
	}
	if d.Host == "" {
		if h, ok := inv.bounded(str(attrs, "server.address")); ok && h != addr {
			d.Host = h
			o.changed = true
		}
	}
}

// packagePaths finds the AI packages named in the paths of a span's attributes: the files it
// opened (Python imports, Node requires), the frames of its stack, its code.file.path.
func (o *observer) packagePaths(attrs pcommon.Map) {
	for _, k := range []string{"file.path", "code.file.path", "code.stacktrace", "process.executable.path"} {
		v := str(attrs, k)
		if v == "" {
			continue
		}
		if len(v) > maxScan {
			o.inv.drop(DropScanLimit)
			v = v[:maxScan]
		}
		for _, p := range packagesInText(v) {
			o.addPackage(p)
		}
	}
}

func (o *observer) addPackage(p Package) {
	inv, w := o.inv, o.w
	var ok bool
	if p.Name, ok = inv.bounded(p.Name); !ok {
		return
	}
	if p.Version, ok = inv.bounded(p.Version); !ok {
		p.Version = ""
	}
	if len(p.Root) > maxString || len(p.Location) > maxString {
		inv.drop(DropTooLong)
		p.Root, p.Location = "", ""
	}
	key := p.Ecosystem + "/" + p.Name
	have := w.Packages[key]
	if have == nil {
		if !inv.room(len(w.Packages)) {
			return
		}
		c := p
		w.Packages[key] = &c
		o.changed = true
		return
	}
	if have.Version == "" && p.Version != "" {
		have.Version, have.Evidence, have.Location = p.Version, p.Evidence, p.Location
		o.changed = true
	}
	if have.Root == "" && p.Root != "" {
		have.Root = p.Root
	}
}
