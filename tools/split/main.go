//go:build ignore

// Split moves top-level declarations of one Go file into other files of its package, and can
// turn the cases of a switch into one function each, as a spec says; nothing else changes
// (the text of every declaration, comments included, is moved as it is). It exists to split
// the long files of issue 16 after the branches that edit them have merged:
//
//	go run tools/split/main.go tools/split/fib.spec
//	go run tools/split/main.go tools/split/netfilter.spec
//
// A spec:
//
//	file engine/fib/fib.go          the file to split (paths from the module root)
//	rules.go fibRule FIB.buildRules the file a declaration goes to, then its names: a function,
//	                                a method as Type.Name, a type, var or const (any name of a
//	                                grouped declaration moves the group); a name the file does
//	                                not have is reported and skipped (it may have moved since)
//	switch Sim.match matches.go     the cases of the switch that is the function's last
//	case "tcp" matchPorts DOC...    switch statement become methods or functions of the same
//	                                signature in matches.go, named as given, documented as
//	                                "// NAME DOC"; the case then returns the call. A case whose
//	                                body does not end in a return stays where it is.
//	drop // ---- IPv6 ----          a line to remove (a section marker whose section moved)
//
// Statements before the switch that define a name a case uses (a closure) are repeated at the
// start of that case's function. Imports of every file are recomputed from what it uses, and
// every file is gofmt'ed. Run go build and the tests afterwards: a case body that breaks out
// of its switch does not compile as a function, and the tool says which cases it moved.
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

type caseSpec struct{ value, name, doc string }

type switchSpec struct {
	fn, target string
	cases      []caseSpec
}

type spec struct {
	file     string
	moves    map[string]string // declaration name -> target file
	drops    []string          // lines removed from the file (section markers left empty)
	order    []string          // target files in spec order
	switches []*switchSpec
}

func readSpec(path string) (*spec, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	s := &spec{moves: map[string]string{}}
	var sw *switchSpec
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		w := strings.Fields(line)
		switch {
		case w[0] == "file" && len(w) == 2:
			s.file = w[1]
		case w[0] == "drop" && len(w) > 1:
			s.drops = append(s.drops, strings.TrimSpace(strings.TrimPrefix(line, "drop")))
		case w[0] == "switch" && len(w) == 3:
			sw = &switchSpec{fn: w[1], target: w[2]}
			s.switches = append(s.switches, sw)
		case w[0] == "case" && len(w) >= 3 && sw != nil:
			doc := strings.TrimSpace(strings.SplitN(line, w[2], 2)[1])
			sw.cases = append(sw.cases, caseSpec{value: w[1], name: w[2], doc: doc})
		case strings.HasSuffix(w[0], ".go"):
			sw = nil
			if !contains(s.order, w[0]) {
				s.order = append(s.order, w[0])
			}
			for _, name := range w[1:] {
				s.moves[name] = w[0]
			}
		default:
			return nil, fmt.Errorf("%s:%d: cannot read %q", path, n, line)
		}
	}
	if s.file == "" {
		return nil, fmt.Errorf("%s: no file line", path)
	}
	return s, sc.Err()
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// declNames are the names a spec may give a declaration.
func declNames(d ast.Decl) []string {
	switch d := d.(type) {
	case *ast.FuncDecl:
		if d.Recv == nil || len(d.Recv.List) == 0 {
			return []string{d.Name.Name}
		}
		return []string{recvType(d.Recv.List[0].Type) + "." + d.Name.Name}
	case *ast.GenDecl:
		var out []string
		for _, sp := range d.Specs {
			switch sp := sp.(type) {
			case *ast.TypeSpec:
				out = append(out, sp.Name.Name)
			case *ast.ValueSpec:
				for _, n := range sp.Names {
					out = append(out, n.Name)
				}
			}
		}
		return out
	}
	return nil
}

func recvType(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.StarExpr:
		return recvType(e.X)
	case *ast.Ident:
		return e.Name
	case *ast.IndexExpr:
		return recvType(e.X)
	}
	return "?"
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: go run tools/split/main.go SPEC")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "split:", err)
		os.Exit(1)
	}
}

func run(specPath string) error {
	s, err := readSpec(specPath)
	if err != nil {
		return err
	}
	src, err := os.ReadFile(s.file)
	if err != nil {
		return err
	}
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, s.file, src, parser.ParseComments)
	if err != nil {
		return err
	}
	off := func(p token.Pos) int { return fset.Position(p).Offset }

	// Edits of the source: ranges cut (moved away) or replaced (switch cases).
	var edits []edit
	out := map[string][]string{} // target file -> declarations' text
	newDecls := map[string][]string{}
	switchIn := map[string]string{} // target -> the signature line of the function whose cases go there
	seen := map[string]bool{}

	for _, sw := range s.switches {
		fd := findFunc(file, sw.fn)
		if fd == nil {
			fmt.Printf("%s: no function %s: its switch is left alone\n", s.file, sw.fn)
			continue
		}
		seen[sw.fn] = true
		switchIn[sw.target] = string(src[off(fd.Pos()):off(fd.Body.Lbrace)])
		var st *ast.SwitchStmt
		var pre []ast.Stmt
		for i, x := range fd.Body.List {
			if x, ok := x.(*ast.SwitchStmt); ok {
				st, pre = x, fd.Body.List[:i]
			}
		}
		if st == nil {
			return fmt.Errorf("%s has no switch", sw.fn)
		}
		sig := string(src[off(fd.Type.Params.Pos()):off(fd.Type.End())])
		recv, call := "", ""
		if fd.Recv != nil {
			recv = string(src[off(fd.Recv.Pos()):off(fd.Recv.End())]) + " "
			call = fd.Recv.List[0].Names[0].Name + "."
		}
		var args []string
		for _, p := range fd.Type.Params.List {
			for _, n := range p.Names {
				args = append(args, n.Name)
			}
		}
		clauses := st.Body.List
		stays := identsIn(fd.Body.List[len(pre)+1:]) // what the function still uses after the switch
		for i, c := range clauses {
			cc := c.(*ast.CaseClause)
			var cs *caseSpec
			for k := range sw.cases {
				for _, v := range cc.List {
					if lit, ok := v.(*ast.BasicLit); ok && lit.Value == sw.cases[k].value {
						cs = &sw.cases[k]
					}
				}
			}
			if cs != nil && len(cc.Body) > 0 {
				if _, ok := cc.Body[len(cc.Body)-1].(*ast.ReturnStmt); !ok {
					fmt.Printf("%s: case %s does not end in a return: left inline\n", sw.fn, cs.value)
					cs = nil
				}
			}
			if cs == nil || len(cc.Body) == 0 {
				for n := range identsIn(cc.Body) {
					stays[n] = true
				}
				continue
			}
			start := off(cc.Colon) + 1
			end := off(st.Body.Rbrace)
			if i+1 < len(clauses) {
				end = off(clauses[i+1].Pos())
			}
			body := strings.TrimRight(string(src[start:end]), " \t\n")
			// the preamble statements this case uses
			used := identsIn(cc.Body)
			var preText []string
			for _, p := range pre {
				for _, n := range definedBy(p) {
					if used[n] {
						preText = append(preText, "\t"+string(src[off(p.Pos()):off(p.End())]))
						break
					}
				}
			}
			fn := fmt.Sprintf("// %s %s\nfunc %s%s%s {\n%s%s\n}", cs.name, cs.doc, recv, cs.name, sig,
				strings.Join(preText, "\n")+nl(len(preText) > 0), dedent(body))
			newDecls[sw.target] = append(newDecls[sw.target], fn)
			edits = append(edits, edit{start, end, fmt.Sprintf("\n\t\treturn %s%s(%s)\n\t", call, cs.name, strings.Join(args, ", "))})
			fmt.Printf("%s: case %s -> %s in %s\n", sw.fn, cs.value, cs.name, sw.target)
		}
		// statements before the switch that only moved cases used go (a closure left unused
		// does not compile)
		for _, p := range pre {
			names := definedBy(p)
			used := len(names) == 0
			for _, n := range names {
				used = used || stays[n]
			}
			if !used {
				a, b := off(p.Pos()), off(p.End())
				for a > 0 && src[a-1] == '\t' {
					a--
				}
				if b < len(src) && src[b] == '\n' {
					b++
				}
				edits = append(edits, edit{a, b, ""})
			}
		}
	}

	for _, d := range file.Decls {
		names := declNames(d)
		target := ""
		for _, n := range names {
			if t, ok := s.moves[n]; ok {
				target = t
				seen[n] = true
			}
		}
		if target == "" {
			continue
		}
		start := d.Pos()
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Doc != nil {
				start = d.Doc.Pos()
			}
		case *ast.GenDecl:
			if d.Doc != nil {
				start = d.Doc.Pos()
			}
		}
		a, b := off(start), off(d.End())
		// the declaration's text, with the switch edits inside it applied
		text := applyEdits(string(src[a:b]), a, edits)
		out[target] = append(out[target], text)
		for b < len(src) && src[b] == '\n' {
			b++
		}
		edits = append(edits, edit{a, b, ""})
	}
	for n := range s.moves {
		if !seen[n] {
			fmt.Printf("%s: no declaration %s: skipped\n", s.file, n)
		}
	}

	// The source without what moved (edits inside moved declarations went with them).
	sort.Slice(edits, func(i, j int) bool { return edits[i].start < edits[j].start })
	var rest bytes.Buffer
	pos := 0
	for _, e := range edits {
		if e.start < pos {
			continue // inside a moved declaration
		}
		rest.Write(src[pos:e.start])
		rest.WriteString(e.text)
		pos = e.end
	}
	rest.Write(src[pos:])
	restText := rest.String()
	for _, d := range s.drops {
		restText = strings.Replace(restText, "\n"+d+"\n", "\n", 1)
	}

	imports := string(src[off(file.Name.End()):off(lastImportEnd(file))])
	dir := filepath.Dir(s.file)
	targets := append([]string{}, s.order...)
	for _, sw := range s.switches {
		if !contains(targets, sw.target) {
			targets = append(targets, sw.target)
		}
	}
	for _, t := range targets {
		var decls []string
		for _, d := range out[t] {
			decls = append(decls, d)
			if switchIn[t] != "" && strings.Contains(d, switchIn[t]) {
				decls = append(decls, newDecls[t]...)
				newDecls[t] = nil
			}
		}
		decls = append(decls, newDecls[t]...)
		if len(decls) == 0 {
			continue
		}
		path := filepath.Join(dir, t)
		var b strings.Builder
		if old, err := os.ReadFile(path); err == nil {
			b.Write(old)
			b.WriteString("\n")
		} else {
			fmt.Fprintf(&b, "package %s\n%s\n\n", file.Name.Name, imports)
		}
		for _, d := range decls {
			b.WriteString(d)
			b.WriteString("\n\n")
		}
		if err := write(path, b.String()); err != nil {
			return err
		}
	}
	return write(s.file, restText)
}

func nl(b bool) string {
	if b {
		return "\n"
	}
	return ""
}

// dedent takes a case body (indented two tabs) to a function body (one tab).
func dedent(s string) string {
	lines := strings.Split(strings.TrimLeft(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, "\t")
	}
	return strings.Join(lines, "\n")
}

func applyEdits(text string, base int, edits []edit) string {
	sort.Slice(edits, func(i, j int) bool { return edits[i].start > edits[j].start })
	for _, e := range edits {
		if e.start >= base && e.end <= base+len(text) {
			text = text[:e.start-base] + e.text + text[e.end-base:]
		}
	}
	return text
}

type edit = struct {
	start, end int
	text       string
}

func findFunc(f *ast.File, name string) *ast.FuncDecl {
	for _, d := range f.Decls {
		if fd, ok := d.(*ast.FuncDecl); ok && contains(declNames(fd), name) {
			return fd
		}
	}
	return nil
}

func identsIn(stmts []ast.Stmt) map[string]bool {
	m := map[string]bool{}
	for _, s := range stmts {
		ast.Inspect(s, func(n ast.Node) bool {
			if id, ok := n.(*ast.Ident); ok {
				m[id.Name] = true
			}
			return true
		})
	}
	return m
}

func definedBy(s ast.Stmt) []string {
	var out []string
	switch s := s.(type) {
	case *ast.AssignStmt:
		for _, l := range s.Lhs {
			if id, ok := l.(*ast.Ident); ok {
				out = append(out, id.Name)
			}
		}
	case *ast.DeclStmt:
		return declNames(s.Decl)
	}
	return out
}

func lastImportEnd(f *ast.File) token.Pos {
	end := f.Name.End()
	for _, d := range f.Decls {
		if gd, ok := d.(*ast.GenDecl); ok && gd.Tok == token.IMPORT {
			end = gd.End()
		}
	}
	return end
}

// write keeps only the imports the file uses, gofmts it and writes it.
func write(path, text string) error {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, text, parser.ParseComments)
	if err != nil {
		os.WriteFile(path+".failed", []byte(text), 0o644)
		return fmt.Errorf("%s (the text is in %s.failed): %w", path, path, err)
	}
	used := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if se, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := se.X.(*ast.Ident); ok {
				used[id.Name] = true
			}
		}
		return true
	})
	// drop unused import specs by text
	src := []byte(text)
	var cuts [][2]int
	for _, im := range f.Imports {
		name := strings.Trim(im.Path.Value, `"`)
		name = name[strings.LastIndex(name, "/")+1:]
		if im.Name != nil {
			name = im.Name.Name
		}
		if name == "_" || name == "." || used[name] {
			continue
		}
		a, b := fset.Position(im.Pos()).Offset, fset.Position(im.End()).Offset
		for a > 0 && src[a-1] == '\t' {
			a--
		}
		if b < len(src) && src[b] == '\n' {
			b++
		}
		cuts = append(cuts, [2]int{a, b})
	}
	for i := len(cuts) - 1; i >= 0; i-- {
		src = append(src[:cuts[i][0]:cuts[i][0]], src[cuts[i][1]:]...)
	}
	// an import block left with blank lines only between groups is tidied by gofmt; an empty
	// one is removed
	src = bytes.Replace(src, []byte("import (\n)\n"), nil, 1)
	src = collapseBlankImportLines(src)
	out, err := format.Source(src)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, out, 0o644)
}

// collapseBlankImportLines removes runs of blank lines inside the import block that cutting
// imports left (gofmt keeps them as group separators).
func collapseBlankImportLines(src []byte) []byte {
	start := bytes.Index(src, []byte("import (\n"))
	if start < 0 {
		return src
	}
	end := bytes.Index(src[start:], []byte("\n)\n"))
	if end < 0 {
		return src
	}
	block := string(src[start : start+end])
	for strings.Contains(block, "\n\n\n") {
		block = strings.ReplaceAll(block, "\n\n\n", "\n\n")
	}
	block = strings.Replace(block, "import (\n\n", "import (\n", 1)
	block = strings.TrimRight(block, "\n")
	out := append([]byte{}, src[:start]...)
	out = append(out, block...)
	return append(out, src[start+end:]...)
}
