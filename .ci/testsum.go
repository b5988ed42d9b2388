//go:build ignore

// Command testsum reads `go test -json` on standard input and prints what a person needs from
// it: one line per package (ok, FAIL, no test files), the whole output of every failed test and
// failed build, and at the end the counts with every skipped test and why it skipped, so that a
// run in which tests did not run never reads as a full pass. It exits 1 when a test or a build
// failed, or the input ended early.
//
//	go test -json ./... | go run .ci/testsum.go
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// event is one line of test2json's output (go doc test2json).
type event struct {
	Action     string
	Package    string
	Test       string
	Elapsed    float64
	Output     string
	ImportPath string // build-output and build-fail events
}

type key struct{ pkg, test string }

type skip struct {
	key
	reason string
}

func main() {
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	code := summarize(os.Stdin, out)
	out.Flush()
	os.Exit(code)
}

func summarize(r io.Reader, w *bufio.Writer) int {
	var (
		output             = map[key][]string{} // output of each running test; test "" is the package's
		build              = map[string][]string{}
		passed, failedN    int
		skips              []skip
		failed             []key
		pkgFailed, started int
		ended              int
	)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		line := sc.Bytes()
		var e event
		if err := json.Unmarshal(line, &e); err != nil || e.Action == "" {
			// go test prints some errors (a package that does not exist) as plain text.
			fmt.Fprintln(w, string(line))
			continue
		}
		k := key{e.Package, e.Test}
		switch e.Action {
		case "build-output":
			build[e.ImportPath] = append(build[e.ImportPath], e.Output)
		case "build-fail":
			fmt.Fprintf(w, "BUILD FAILED %s\n%s", e.ImportPath, strings.Join(build[e.ImportPath], ""))
			delete(build, e.ImportPath)
		case "start":
			started++
		case "output":
			output[k] = append(output[k], e.Output)
		case "pass", "fail", "skip":
			if e.Test == "" {
				ended++
				switch e.Action {
				case "pass":
					fmt.Fprintf(w, "ok   %s %.1fs\n", e.Package, e.Elapsed)
				case "skip":
					fmt.Fprintf(w, "?    %s [no test files]\n", e.Package)
				case "fail":
					pkgFailed++
					fmt.Fprintf(w, "FAIL %s %.1fs\n", e.Package, e.Elapsed)
					// What the package printed outside any test: a panic, a timeout, a
					// failed TestMain.
					for _, l := range output[k] {
						if t := strings.TrimSpace(l); t != "" && t != "FAIL" && t != "PASS" && !strings.HasPrefix(t, "FAIL\t"+e.Package) && !strings.HasPrefix(t, "ok  \t") {
							fmt.Fprint(w, "    ", l)
						}
					}
				}
				for kk := range output {
					if kk.pkg == e.Package {
						delete(output, kk)
					}
				}
				w.Flush()
				continue
			}
			switch e.Action {
			case "pass":
				passed++
			case "fail":
				failedN++
				failed = append(failed, k)
				fmt.Fprintf(w, "--- FAIL %s %s (%.2fs)\n", e.Package, e.Test, e.Elapsed)
				for _, l := range output[k] {
					fmt.Fprint(w, "    ", l)
				}
			case "skip":
				skips = append(skips, skip{k, skipReason(output[k])})
			}
			delete(output, k)
			w.Flush()
		}
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(w, "testsum: reading go test -json: %v\n", err)
		return 1
	}

	fmt.Fprintf(w, "\n%d tests: %d passed, %d failed, %d skipped\n", passed+failedN+len(skips), passed, failedN, len(skips))
	if len(skips) > 0 {
		// Grouped by reason, so that one missing tool reads as one line with its tests.
		byReason := map[string][]string{}
		for _, s := range skips {
			byReason[s.reason] = append(byReason[s.reason], strings.TrimPrefix(s.pkg, "roundtrip/")+" "+s.test)
		}
		reasons := make([]string, 0, len(byReason))
		for r := range byReason {
			reasons = append(reasons, r)
		}
		sort.Slice(reasons, func(i, j int) bool {
			if len(byReason[reasons[i]]) != len(byReason[reasons[j]]) {
				return len(byReason[reasons[i]]) > len(byReason[reasons[j]])
			}
			return reasons[i] < reasons[j]
		})
		fmt.Fprintf(w, "SKIPPED (%d): these tests did not run\n", len(skips))
		for _, r := range reasons {
			tests := byReason[r]
			sort.Strings(tests)
			fmt.Fprintf(w, "  %d: %s\n", len(tests), r)
			for _, t := range tests {
				fmt.Fprintf(w, "      %s\n", t)
			}
		}
	}
	if len(failed) > 0 {
		fmt.Fprintf(w, "FAILED (%d):\n", len(failed))
		for _, f := range failed {
			fmt.Fprintf(w, "  %s %s\n", strings.TrimPrefix(f.pkg, "roundtrip/"), f.test)
		}
	}
	if len(build) > 0 {
		for path, lines := range build {
			fmt.Fprintf(w, "build output of %s:\n%s", path, strings.Join(lines, ""))
		}
	}
	if failedN > 0 || pkgFailed > 0 {
		return 1
	}
	if ended < started {
		fmt.Fprintf(w, "testsum: %d of %d packages never finished\n", started-ended, started)
		return 1
	}
	return 0
}

// skipReason is what a skipped test said: its output without the run and result lines.
func skipReason(lines []string) string {
	var why []string
	for _, l := range lines {
		t := strings.TrimSpace(l)
		if t == "" || strings.HasPrefix(t, "=== ") || strings.HasPrefix(t, "--- ") {
			continue
		}
		// "file_test.go:12: reason" -> "reason": the file and line differ per test.
		if i := strings.Index(t, ".go:"); i >= 0 && !strings.Contains(t[:i], " ") {
			if j := strings.Index(t[i+4:], ": "); j >= 0 {
				t = t[i+4+j+2:]
			}
		}
		why = append(why, t)
	}
	if len(why) == 0 {
		return "(no reason given)"
	}
	return strings.Join(why, "; ")
}
