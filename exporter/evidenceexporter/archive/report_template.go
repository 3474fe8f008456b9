package archive

import (
	_ "embed"
	"html/template"
)

// reportHTML is the template of report.html (report.html.tmpl, embedded as the collector's
// zpages extension embeds its templates): one self-contained page, inline CSS, no script, no
// external resource (the Content-Security-Policy forbids all of them, so even a mistake in
// escaping could not run code or fetch anything). Times are UTC.
//
//go:embed report.html.tmpl
var reportHTML string

var reportTemplate = template.Must(template.New("report").Parse(reportHTML))
