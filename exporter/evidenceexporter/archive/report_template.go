package archive

// reportHTML is the template of report.html: one self-contained page, inline CSS, no script,
// no external resource (the Content-Security-Policy forbids all of them, so even a mistake in
// escaping could not run code or fetch anything). Times are UTC.
const reportHTML = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<meta name="agenttrail-report" content="{{.Format}}">
<title>AgentTrail evidence report · trace {{.TraceID}}</title>
<style>
:root{--ink:#172033;--muted:#5b6678;--line:#dfe3ea;--soft:#f5f7fa;--bg:#eef1f5;--navy:#0e1a2f;
--agent:#6d3fd1;--chat:#2563eb;--tool:#c2650a;--net:#0f7f95;--exec:#a21caf;--file:#15803d;--fn:#64748b;--finding:#c81e1e;--err:#c81e1e}
*{box-sizing:border-box}
html{-webkit-print-color-adjust:exact;print-color-adjust:exact}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 "Segoe UI",Roboto,"Liberation Sans","DejaVu Sans",Arial,sans-serif}
.mono,code,pre,.hash{font-family:"DejaVu Sans Mono","Liberation Mono",Menlo,Consolas,monospace}
header{background:var(--navy);color:#fff;padding:22px 32px 20px}
header .brand{font-size:12px;letter-spacing:.12em;text-transform:uppercase;color:#9fb3d1;display:flex;justify-content:space-between;gap:16px}
header h1{margin:6px 0 4px;font-size:22px;font-weight:600}
header h1 .mono{font-size:19px;font-weight:500;color:#dce6f5;overflow-wrap:anywhere}
header .range{color:#c8d4e6;font-size:14px}
.chips{display:flex;flex-wrap:wrap;gap:8px;margin-top:12px}
.chip{background:#1d2c47;border:1px solid #2c3f61;color:#dce6f5;border-radius:999px;padding:2px 11px;font-size:12.5px}
main{max-width:1480px;margin:0 auto;padding:20px 28px 40px}
.verdict{display:flex;gap:16px;align-items:center;border-radius:8px;padding:14px 18px;margin-bottom:18px;border:1px solid;background:#fff}
.verdict .lab{font-weight:700;font-size:15px;white-space:nowrap;padding:4px 12px;border-radius:6px;color:#fff}
.verdict .txt{font-size:15px}
.v-none{border-color:#b8c4d6}.v-none .lab{background:#52627a}
.sev0 .lab,.badge.sev0{background:#52627a}.sev1 .lab,.badge.sev1{background:#2f6db5}.sev2 .lab,.badge.sev2{background:#3d7f3a}
.sev3 .lab,.badge.sev3{background:#b7791f}.sev4 .lab,.badge.sev4{background:#c2410c}.sev5 .lab,.badge.sev5,.sev6 .lab,.badge.sev6{background:#b91c1c}
.verdict.sev4,.verdict.sev5,.verdict.sev6{border-color:#f0b4a8;background:#fff7f5}
.notice{font-size:13px;color:var(--muted);background:#fff;border:1px solid var(--line);border-left:4px solid #8aa0bf;border-radius:6px;padding:10px 14px;margin-bottom:18px}
section{background:#fff;border:1px solid var(--line);border-radius:10px;padding:18px 22px 20px;margin-bottom:18px;box-shadow:0 1px 2px rgba(16,24,40,.04)}
section>h2{margin:0 0 12px;font-size:17px;font-weight:650;display:flex;align-items:baseline;gap:10px}
section>h2 .n{color:#8a96a8;font-weight:500}
section>h2 .aside{margin-left:auto;font-size:12.5px;font-weight:400;color:var(--muted)}
h3{font-size:15px;margin:0 0 6px}
.muted{color:var(--muted)}
.grid{display:grid;grid-template-columns:1fr;gap:14px}
.groups{display:grid;grid-template-columns:repeat(auto-fit,minmax(300px,1fr));gap:6px 28px}
h4{margin:8px 0 2px;font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:#44506a}
.card{border:1px solid var(--line);border-radius:8px;padding:12px 14px;background:var(--soft)}
dl.facts{display:grid;grid-template-columns:max-content 1fr;gap:3px 14px;margin:6px 0 0}
dl.facts dt{color:var(--muted);font-size:12.5px;padding-top:1px}
dl.facts dd{margin:0;overflow-wrap:anywhere;font-family:"DejaVu Sans Mono","Liberation Mono",monospace;font-size:12.5px}
.finding{border:1px solid var(--line);border-radius:8px;padding:14px 16px;margin-bottom:12px}
.finding .top{display:flex;gap:10px;align-items:center;flex-wrap:wrap}
.badge{color:#fff;border-radius:5px;padding:2px 9px;font-size:12px;font-weight:650}
.finding h3{margin:0;font-size:16px}
.narr{margin:10px 0 8px;padding:10px 14px;background:#fbf7ee;border-left:4px solid #d6a442;border-radius:4px;white-space:pre-wrap;overflow-wrap:anywhere}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;vertical-align:top;padding:6px 8px;border-bottom:1px solid var(--line)}
th{font-size:12px;text-transform:uppercase;letter-spacing:.04em;color:var(--muted);font-weight:600;background:var(--soft)}
td{font-size:13px}
.kv td:first-child{white-space:nowrap}
.nofinding{padding:12px 14px;border:1px dashed #b8c4d6;border-radius:8px;background:var(--soft)}
/* timeline */
.legend{display:flex;flex-wrap:wrap;gap:14px;font-size:12.5px;color:var(--muted);margin:-4px 0 10px}
.legend i{display:inline-block;width:14px;height:10px;border-radius:2px;margin-right:5px;vertical-align:-1px}
.legend .dm{width:10px;height:10px;transform:rotate(45deg);border-radius:1px}
.tl{position:relative;border:1px solid var(--line);border-radius:8px;overflow:hidden}
.tl .axis,.tl .row,.tl .lane{display:grid;grid-template-columns:40% 60%}
.tl .axis{background:var(--soft);border-bottom:1px solid var(--line);font-size:11.5px;color:var(--muted);height:28px}
.tl .axis .lbl{padding:6px 12px;font-weight:600;text-transform:uppercase;letter-spacing:.04em}
.trk{position:relative;margin:0 70px 0 10px}
.axis .tick{position:absolute;top:7px;transform:translateX(-50%);white-space:nowrap}
.axis .tick:first-child{transform:none}
.gridlines{position:absolute;top:28px;bottom:0;left:calc(40% + 10px);right:70px;pointer-events:none}
.gridlines span{position:absolute;top:0;bottom:0;border-left:1px dashed #e3e7ee}
.lane{background:#f1f4f9;border-top:1px solid var(--line);border-bottom:1px solid var(--line);position:relative;z-index:1}
.lane .lbl{grid-column:1 / span 2;padding:6px 12px;font-weight:650;font-size:13px;border-left:5px solid}
.lane .lbl .sub{font-weight:400;color:var(--muted);margin-left:10px;font-size:12px}
.c0{border-color:#3b6fd8!important}.c1{border-color:#d9822b!important}.c2{border-color:#2a9d8f!important}.c3{border-color:#9b59b6!important}.c4{border-color:#c0392b!important}.c5{border-color:#7f8c8d!important}
.row{border-bottom:1px solid #f0f2f6;min-height:30px}
.row .lbl{padding:5px 10px 5px 12px;font-size:13px;overflow-wrap:anywhere;border-right:1px solid var(--line);position:relative}
.row .nm{font-weight:650}
.row .dt{font-family:"DejaVu Sans Mono","Liberation Mono",monospace;font-size:12px;color:#334155;margin-left:4px}
.row .from{display:block;font-size:11.5px;color:var(--muted)}
.row .errtag{display:inline-block;margin-left:6px;font-size:11.5px;font-weight:700;color:#fff;background:var(--err);border-radius:4px;padding:0 6px}
.row .flag{display:inline-block;margin-left:6px;font-size:11.5px;font-weight:700;color:var(--finding);border:1px solid var(--finding);border-radius:4px;padding:0 5px}
.row .trk{height:100%;min-height:30px}
.bar{position:absolute;top:7px;height:16px;min-width:3px;border-radius:3px;background:var(--fn)}
.din{position:absolute;right:6px;top:0;font-size:11px;line-height:16px;color:#fff;font-weight:600;white-space:nowrap}
.dur{position:absolute;top:7px;font-size:11px;color:var(--muted);white-space:nowrap;padding:0 6px}
.mk{position:absolute;top:10px;width:11px;height:11px;margin-left:-5px;transform:rotate(45deg);background:var(--file);border:1px solid #fff;box-shadow:0 0 0 1px var(--file)}
.row.ev .nm{font-weight:600;color:#334155}
.row.ev .lbl::before{content:"◆";color:var(--file);font-size:10px;margin-right:5px}
.row.ev.k-finding .lbl::before{color:var(--finding)}
.k-agent .bar{background:var(--agent)}.k-chat .bar{background:var(--chat)}.k-tool .bar{background:var(--tool)}.k-net .bar{background:var(--net)}
.k-exec .bar{background:var(--exec)}.k-file .bar{background:var(--file)}
.k-finding .mk{background:var(--finding);box-shadow:0 0 0 1px var(--finding)}
.row.err .bar{background:repeating-linear-gradient(135deg,var(--err) 0 5px,#e86a6a 5px 10px);outline:2px solid var(--err)}
.row.err{background:#fff6f6}
.row.hot{background:#fffaf0}
/* steps */
.steps td.t{white-space:nowrap;font-family:"DejaVu Sans Mono","Liberation Mono",monospace;font-size:12px}
.steps td.step{font-weight:650;white-space:nowrap}
.steps td.step i{display:inline-block;width:9px;height:9px;border-radius:2px;margin-right:6px;background:var(--fn)}
.steps .k-agent i{background:var(--agent)}.steps .k-chat i{background:var(--chat)}.steps .k-tool i{background:var(--tool)}.steps .k-net i{background:var(--net)}.steps .k-exec i{background:var(--exec)}.steps .k-file i{background:var(--file)}.steps .k-finding i{background:var(--finding)}
.steps td.ln{font-size:12px;color:var(--muted);min-width:150px}
.steps dl.facts{margin:0}
.steps tr.e td.st{color:var(--err);font-weight:650}
.steps tr.e{background:#fff6f6}
details{margin-top:4px}
details summary{cursor:pointer;color:#2458b3;font-size:12px}
details pre{white-space:pre-wrap;overflow-wrap:anywhere;font-size:11.5px;background:var(--soft);padding:8px;border-radius:4px;margin:4px 0 0}
/* proof */
.hash{font-family:"DejaVu Sans Mono","Liberation Mono",monospace;font-size:11.5px;overflow-wrap:anywhere}
td.t{white-space:nowrap;font-family:"DejaVu Sans Mono","Liberation Mono",monospace;font-size:12px}
.st-ok{color:#166534;font-weight:650}.st-warn{color:#a16207;font-weight:650}.st-bad{color:#b91c1c;font-weight:700}
ol.checks{margin:6px 0 10px;padding-left:22px}ol.checks li{margin:3px 0}
.cmd{background:var(--navy);color:#e5edf8;border-radius:6px;padding:10px 14px;overflow-wrap:anywhere;font-size:12.5px}
footer{max-width:1480px;margin:0 auto;padding:0 28px 30px;color:var(--muted);font-size:12px}
@media print{body{background:#fff}section{break-inside:avoid-page;box-shadow:none}header{padding:12px 16px}main{padding:8px}details{display:none}}
</style>
</head>
<body>
<header>
<div class="brand"><span>AgentTrail · Evidence report</span><span>{{.Format}}</span></div>
<h1>Attack story <span class="mono">{{.TraceID}}</span></h1>
<div class="range">{{if .Date}}{{.Date}} · {{.Start}} → {{.End}} UTC · duration {{.Duration}}{{else}}The story holds no spans.{{end}}</div>
<div class="chips">
<span class="chip">{{.SpanCount}} spans</span>
<span class="chip">{{.EventCount}} events</span>
<span class="chip">{{.ProcessCount}} process{{if ne .ProcessCount 1}}es{{end}}</span>
<span class="chip">{{.LaneCount}} lane{{if ne .LaneCount 1}}s{{end}}</span>
<span class="chip">{{.FindingCount}} finding record{{if ne .FindingCount 1}}s{{end}}</span>
{{if .ErrorCount}}<span class="chip">{{.ErrorCount}} failed step{{if ne .ErrorCount 1}}s{{end}}</span>{{end}}
<span class="chip">{{len .Records}} archive records in {{len .Segments}} segment{{if ne (len .Segments) 1}}s{{end}}</span>
</div>
</header>
<main>
<div class="verdict {{if .NoFinding}}v-none{{else}}{{.Verdict.Class}}{{end}}" id="verdict"><span class="lab">{{.Verdict.Label}}</span><span class="txt">{{.Verdict.Text}}</span></div>
<div class="notice">This page is a <b>rendering</b>, not evidence on its own and not signed. The signed evidence is
<span class="mono">story.json</span>, <span class="mono">findings.json</span> and <span class="mono">proof.json</span> in this bundle.
<span class="mono">agenttrail evidence verify-bundle</span> checks them and also checks that this page is exactly what they render to
(section 5). All text from the workload (prompts, arguments, paths) is shown literally; invisible or direction-changing characters are shown as ⟨U+XXXX⟩.</div>

<section id="workload">
<h2><span class="n">1</span> Workload identity<span class="aside">who did it: the traced process{{if ne (len .Workloads) 1}}es{{end}}</span></h2>
<div class="grid">
{{range .Workloads}}<div class="card">
<h3>service <span class="mono">{{.Title}}</span></h3>
<div class="groups">{{range .Groups}}<div><h4>{{.Title}}</h4>{{if .Note}}<div class="muted">{{.Note}}</div>{{end}}{{if .Facts}}<dl class="facts">{{range .Facts}}<dt>{{.K}}</dt><dd>{{.V}}</dd>{{end}}</dl>{{end}}</div>{{end}}</div>
{{if .Hidden}}<div class="muted" style="font-size:12px;margin-top:8px">{{.Hidden}} more resource attribute{{if ne .Hidden 1}}s{{end}} in story.json.</div>{{end}}
</div>
{{else}}<div class="muted">The story holds no spans, so no workload is named.</div>{{end}}
</div>
</section>

<section id="findings">
<h2><span class="n">2</span> Findings<span class="aside">what the detection rules concluded</span></h2>
{{if .NoFinding}}<div class="nofinding"><b>No finding.</b> The archive holds no finding record for this trace, and its spans carry no finding
attributes: no detection rule fired on this story. The timeline below shows what the workload did; the absence of a finding is not proof that the activity was benign.</div>{{end}}
{{if .Orphan}}<div class="nofinding" style="margin-bottom:12px"><b>No finding record.</b> The story's own spans carry the finding shown below, but the archive holds no finding (OCSF) record for this trace.</div>{{end}}
{{range .Findings}}<div class="finding">
<div class="top"><span class="badge {{.SevClass}}">{{.Severity}}</span><h3>{{.Title}}</h3></div>
{{if .Narrative}}<div class="narr">{{.Narrative}}</div>{{end}}
<table class="kv" style="margin-top:6px">
{{if .Message}}<tr><td class="muted">summary</td><td>{{.Message}}</td></tr>{{end}}
<tr><td class="muted">detection rules</td><td>{{range $i, $r := .Rules}}{{if $i}}<br>{{end}}<code>{{$r.K}}</code>{{if $r.V}} · {{$r.V}}{{end}}{{else}}<span class="muted">none named</span>{{end}}</td></tr>
<tr><td class="muted">MITRE ATLAS</td><td>{{range $i, $a := .Atlas}}{{if $i}}<br>{{end}}<code><b>{{$a.ID}}</b></code> {{$a.Name}}{{if $a.FromTable}}<span class="muted"> *</span>{{end}}{{if $a.Tactic}} <span class="muted">· tactic {{$a.Tactic}}</span>{{end}}{{else}}<span class="muted">no technique named</span>{{end}}{{if .TableNames}}<div class="muted" style="font-size:12px;margin-top:3px">* name from AgentTrail's built-in ATLAS table; the finding gives only the id</div>{{end}}</td></tr>
{{if .UID}}<tr><td class="muted">finding id</td><td><code>{{.UID}}</code></td></tr>{{end}}
{{if .Time}}<tr><td class="muted">reported</td><td>{{.Time}}</td></tr>{{end}}
<tr><td class="muted">source</td><td>{{if eq .Source "record"}}finding record (OCSF Detection Finding) in findings.json{{else}}attributes and events of the story's spans in story.json (no finding record){{end}}</td></tr>
</table>
</div>
{{end}}
</section>

<section id="timeline-section">
<h2><span class="n">3</span> Timeline<span class="aside">one lane per process and goroutine (or thread) · times relative to {{.Start}} UTC</span></h2>
<div class="legend"><span><i style="background:var(--agent)"></i>agent / prompt</span><span><i style="background:var(--chat)"></i>model call</span><span><i style="background:var(--tool)"></i>tool call</span><span><i style="background:var(--net)"></i>network</span><span><i style="background:var(--exec)"></i>process start</span><span><i style="background:var(--fn)"></i>other function</span><span><i class="dm" style="background:var(--file)"></i>file opened (event)</span><span><i class="dm" style="background:var(--finding)"></i>finding (event)</span><span><i style="background:repeating-linear-gradient(135deg,var(--err) 0 4px,#e86a6a 4px 8px)"></i>failed</span></div>
<div class="tl" id="timeline">
<div class="axis"><div class="lbl">Step</div><div class="trk">{{range .Ticks}}<span class="tick" style="left:{{.Left}}%">{{.Label}}</span>{{end}}</div></div>
<div class="gridlines">{{range .Ticks}}<span style="left:{{.Left}}%"></span>{{end}}</div>
{{range .Lanes}}<div class="lane" id="{{.ID}}"><div class="lbl c{{.Color}}">{{.Label}}{{if .Sub}}<span class="sub">{{.Sub}}</span>{{end}}</div></div>
{{range .Rows}}<div class="row k-{{.Class}}{{if .Error}} err{{end}}{{if .Event}} ev{{end}}{{if .Finding}} hot{{end}}" title="{{.Title}}">
<div class="lbl" style="padding-left:{{.IndentPx}}px"><span class="nm">{{.Name}}</span>{{if .Detail}} <span class="dt">{{.Detail}}</span>{{end}}{{if .Error}}<span class="errtag">✕ {{.Error}}</span>{{end}}{{if and .Finding (not .Event)}}<span class="flag">⚑ finding</span>{{end}}{{if .From}}<span class="from">↳ {{.From}}</span>{{end}}</div>
<div class="trk">{{if .Event}}<span class="mk" style="left:{{.Left}}%"></span>{{else}}<span class="bar" style="left:{{.Left}}%;width:{{.Width}}%">{{if .DurInside}}<span class="din">{{.Duration}}</span>{{end}}</span>{{if .DurInside}}{{else if .DurLeft}}<span class="dur" style="left:{{.DurLeft}}%">{{.Duration}}</span>{{else}}<span class="dur" style="right:{{.DurRight}}%">{{.Duration}}</span>{{end}}{{end}}</div>
</div>
{{end}}{{else}}<div class="row"><div class="lbl muted">The story holds no spans.</div></div>{{end}}
</div>
</section>

<section id="steps">
<h2><span class="n">4</span> Every step in time order<span class="aside">{{len .Steps}} steps · full values; attributes and call stacks expand</span></h2>
<table class="steps">
<thead><tr><th>#</th><th>Time (UTC)</th><th>Offset</th><th>Lane</th><th>Step</th><th>Details</th><th>Duration</th><th>Status</th></tr></thead>
<tbody>
{{range .Steps}}<tr class="k-{{.Class}}{{if .Error}} e{{end}}"><td class="t">{{.No}}</td><td class="t">{{.Time}}</td><td class="t">{{.Offset}}</td><td class="ln">{{.Lane}}</td><td class="step"><i></i>{{.Step}}</td>
<td>{{if .Facts}}<dl class="facts">{{range .Facts}}<dt>{{.K}}</dt><dd>{{.V}}</dd>{{end}}</dl>{{end}}
{{if .Attributes}}<details><summary>all {{len .Attributes}} attribute{{if ne (len .Attributes) 1}}s{{end}}</summary><pre>{{range .Attributes}}{{.K}} = {{.V}}
{{end}}</pre></details>{{end}}{{if .Stack}}<details><summary>call stack</summary><pre>{{.Stack}}</pre></details>{{end}}</td>
<td class="t">{{.Duration}}</td><td class="st">{{.Status}}</td></tr>
{{end}}</tbody>
</table>
</section>

<section id="proof">
<h2><span class="n">5</span> Chain of custody proof<span class="aside">from proof.json</span></h2>
<h3>Segments</h3>
<table>
<thead><tr><th>Segment</th><th>Manifest signature</th><th>Public key (Ed25519)</th><th>Chain in the proof</th><th>Sealed</th></tr></thead>
<tbody>{{range .Segments}}<tr><td><span class="mono">{{.Segment}}</span>{{if .FileSHA256.A}}<br><span class="muted" style="font-size:12px">file SHA-256</span><br><span class="hash">{{.FileSHA256.A}}<wbr>{{.FileSHA256.B}}</span>{{end}}</td><td class="st-{{.StatusClass}}">{{.Status}}</td><td class="hash">{{if .Key.A}}{{.Key.A}}<wbr>{{.Key.B}}{{else}}—{{end}}</td>
<td>{{.Range}}; records of this trace: seq {{.Included}}<br><span class="muted">ends at hash</span> <span class="hash">{{.LastHash.A}}<wbr>{{.LastHash.B}}</span></td><td class="t">{{if .Closed}}{{.Closed}}{{else}}—{{end}}</td></tr>
{{end}}</tbody>
</table>
<h3 style="margin-top:16px">Records of this trace</h3>
<table>
<thead><tr><th>Seq</th><th>Kind</th><th>Segment</th><th>Written (UTC)</th><th>Record hash (SHA-256)</th><th>Previous hash</th></tr></thead>
<tbody>{{range .Records}}<tr><td class="mono">{{.Seq}}</td><td>{{.Kind}}</td><td class="mono">{{.Segment}}</td><td class="t">{{.Time}}</td><td class="hash">{{.Hash.A}}<wbr>{{.Hash.B}}</td><td class="hash">{{if .Prev.A}}{{.Prev.A}}<wbr>{{.Prev.B}}{{else}}— (first record of the archive){{end}}</td></tr>
{{end}}</tbody>
</table>
<h3 style="margin-top:16px">What verify-bundle checks</h3>
<ol class="checks">
<li>Each record above hashes (SHA-256) to the hash it states. A record's hash covers its sequence number, time, kind, trace id, the SHA-256 of its content and the hash of the record before it, so no part of it can change unnoticed.</li>
<li>Each record sits, unchanged, in the chain of its segment, and every following record in the proof links to the one before it (sequence number + 1, previous hash) up to the last record of the segment. Records of other traces appear in the proof only as headers with a digest of their content, which stays out of the bundle.</li>
<li>That last record is the one the segment's signed manifest names, and the manifest's Ed25519 signature is valid — for the key you pin with <span class="mono">--public-key</span>. Without a pinned key it only shows that whoever holds the key named in the manifest signed it.</li>
<li>The chain holds no story or finding of this trace that the bundle left out.</li>
<li><span class="mono">story.json</span> and <span class="mono">findings.json</span> are exactly the contents of these records.</li>
<li>This <span class="mono">report.html</span> is byte for byte what this report format ({{.Format}}) renders from those records, so an edited page fails.</li>
</ol>
<p class="muted" style="margin:4px 0 10px">What it does not show: that the key belongs to the operator you think (compare it with the key published out of band);
that events outside the traced processes did not happen; or, for a segment still open at export, more than the chain (those records are linked but not yet signed).{{if .Unsigned}} <b>This bundle holds records of an open segment.</b>{{end}}</p>
<div class="cmd mono">$ {{.Command}}</div>
</section>
</main>
<footer>Rendered by AgentTrail from the records of trace {{.TraceID}} ({{.Format}}). Same records, same bytes: the page carries no time of rendering.</footer>
</body>
</html>
`
