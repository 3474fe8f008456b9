//go:build tools

// Package tools pins kube-apiserver's main package so `go mod tidy` keeps
// every module it needs in this module's go.sum.
package tools

import _ "k8s.io/kubernetes/cmd/kube-apiserver"
