// Command gotemplate-fixtures renders chat templates with Go's own text/template, the way
// ollama drives it, and writes the results as JSON fixtures for kettle's tests (CI has no Go).
//
//	cd tools/gotemplate-fixtures && go run . -root ../..
//
// (the -cases, -templates and -out paths are relative to -root, the repository).
// Every template file (*.tmpl, *.gotmpl) in the -templates folders is rendered with every
// conversation of the cases file, and every "semantics" case (an inline template with one
// conversation) is rendered too. A failure is recorded as the error text.
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"text/template"
	"text/template/parse"
	"time"
)

type conversation struct {
	Messages []inputMessage `json:"messages"`
	System   string         `json:"system"`
	Tools    []inputTool    `json:"tools"`
	Suffix   string         `json:"suffix"`
	Response string         `json:"response"`
}

type semanticsCase struct {
	Name         string `json:"name"`
	Template     string `json:"template"`
	Conversation string `json:"conversation"`
}

type cases struct {
	Conversations map[string]conversation `json:"conversations"`
	Semantics     []semanticsCase         `json:"semantics"`
}

type render struct {
	Template     string `json:"template"`
	Conversation string `json:"conversation"`
	Output       string `json:"output"`
	Error        string `json:"error,omitempty"`
}

type fixtures struct {
	Generator string            `json:"generator"`
	GoVersion string            `json:"go_version"`
	Templates map[string]string `json:"templates"`
	Renders   []render          `json:"renders"`
}

// The helper functions ollama registers for templates.
var funcs = template.FuncMap{
	"json": func(v any) string {
		b, _ := json.Marshal(v)
		return string(b)
	},
	"currentDate": func(args ...string) string {
		return time.Now().Format("2006-01-02")
	},
	"yesterdayDate": func(args ...string) string {
		return time.Now().AddDate(0, 0, -1).Format("2006-01-02")
	},
	"toTypeScriptType": func(v any) string {
		switch p := v.(type) {
		case ToolProperty:
			return p.TypeScriptType()
		case *ToolProperty:
			if p != nil {
				return p.TypeScriptType()
			}
		}
		return "any"
	},
}

// names lists every field and variable identifier of a tree, lower-cased (ollama's Vars).
func names(n parse.Node, out map[string]bool) {
	switch n := n.(type) {
	case *parse.ListNode:
		for _, c := range n.Nodes {
			names(c, out)
		}
	case *parse.ActionNode:
		names(n.Pipe, out)
	case *parse.IfNode:
		names(&n.BranchNode, out)
	case *parse.RangeNode:
		names(&n.BranchNode, out)
	case *parse.WithNode:
		names(&n.BranchNode, out)
	case *parse.BranchNode:
		names(n.Pipe, out)
		names(n.List, out)
		if n.ElseList != nil {
			names(n.ElseList, out)
		}
	case *parse.PipeNode:
		for _, c := range n.Cmds {
			for _, a := range c.Args {
				names(a, out)
			}
		}
	case *parse.FieldNode:
		for _, i := range n.Ident {
			out[strings.ToLower(i)] = true
		}
	case *parse.VariableNode:
		for _, i := range n.Ident {
			out[strings.ToLower(i)] = true
		}
	}
}

// cutAfterResponse drops everything after the first action that prints a .Response field
// (ollama's deleteNode; if/with/range conditions are not looked into).
func cutAfterResponse(root *parse.ListNode) *parse.ListNode {
	cut := false
	var walk func(parse.Node) parse.Node
	walk = func(n parse.Node) parse.Node {
		if f, ok := n.(*parse.FieldNode); ok {
			for _, i := range f.Ident {
				if i == "Response" {
					cut = true
					return n
				}
			}
		}
		if cut {
			return nil
		}
		switch t := n.(type) {
		case *parse.ListNode:
			var kept []parse.Node
			for _, c := range t.Nodes {
				if k := walk(c); k != nil {
					kept = append(kept, k)
				}
			}
			t.Nodes = kept
		case *parse.IfNode:
			walkBranch(&t.BranchNode, walk)
		case *parse.WithNode:
			walkBranch(&t.BranchNode, walk)
		case *parse.RangeNode:
			walkBranch(&t.BranchNode, walk)
		case *parse.ActionNode:
			p := walk(t.Pipe)
			if p == nil {
				return nil
			}
			t.Pipe = p.(*parse.PipeNode)
		case *parse.PipeNode:
			var cmds []*parse.CommandNode
			for _, c := range t.Cmds {
				var args []parse.Node
				for _, a := range c.Args {
					if k := walk(a); k != nil {
						args = append(args, k)
					}
				}
				if len(args) == 0 {
					return nil
				}
				c.Args = args
				cmds = append(cmds, c)
			}
			t.Cmds = cmds
		}
		return n
	}
	return walk(root.CopyList()).(*parse.ListNode)
}

func walkBranch(b *parse.BranchNode, walk func(parse.Node) parse.Node) {
	if l := walk(b.List); l != nil {
		b.List = l.(*parse.ListNode)
	}
	if b.ElseList != nil {
		if l := walk(b.ElseList); l != nil {
			b.ElseList = l.(*parse.ListNode)
		} else {
			b.ElseList = nil // kettle drops an else cut off by the response
		}
	}
}

type chatTemplate struct {
	tmpl     *template.Template
	last     *template.Template
	messages bool
}

func compile(src string) (*chatTemplate, error) {
	tmpl, err := template.New("").Option("missingkey=zero").Funcs(funcs).Parse(src)
	if err != nil {
		return nil, err
	}
	seen := map[string]bool{}
	names(tmpl.Tree.Root, seen)
	if !seen["messages"] && !seen["response"] {
		response := &parse.ActionNode{NodeType: parse.NodeAction, Pipe: &parse.PipeNode{
			NodeType: parse.NodePipe, Cmds: []*parse.CommandNode{{NodeType: parse.NodeCommand,
				Args: []parse.Node{&parse.FieldNode{NodeType: parse.NodeField, Ident: []string{"Response"}}}}}}}
		tmpl.Tree.Root.Nodes = append(tmpl.Tree.Root.Nodes, response)
	}
	last := template.New("").Option("missingkey=zero").Funcs(funcs)
	last, err = last.AddParseTree("", &parse.Tree{Root: cutAfterResponse(tmpl.Tree.Root)})
	if err != nil {
		return nil, err
	}
	return &chatTemplate{tmpl: tmpl, last: last, messages: seen["messages"]}, nil
}

func withThink(values map[string]any) map[string]any {
	values["Think"] = false
	values["ThinkLevel"] = ""
	values["IsThinkSet"] = false
	return values
}

func (t *chatTemplate) render(c conversation) (string, error) {
	msgs := append([]inputMessage(nil), c.Messages...)
	if c.System != "" && (len(msgs) == 0 || msgs[0].Role != "system") {
		msgs = append([]inputMessage{{Role: "system", Content: c.System}}, msgs...)
	}
	if c.Response != "" {
		msgs = append(msgs, inputMessage{Role: "assistant", Content: c.Response})
	}
	for i := range msgs {
		msgs[i].Role = strings.ToLower(msgs[i].Role)
	}
	var b bytes.Buffer
	if c.Suffix != "" {
		prompt := ""
		for _, m := range msgs {
			if m.Role == "user" {
				prompt = m.Content
			}
		}
		if prompt != "" {
			err := t.tmpl.Execute(&b, withThink(map[string]any{"Prompt": prompt, "Suffix": c.Suffix, "Response": ""}))
			return b.String(), err
		}
	}
	// collate: system messages joined; runs of one role merged, except tool results
	var system []string
	var collated []*inputMessage
	for i := range msgs {
		m := msgs[i]
		if m.Role == "system" {
			system = append(system, m.Content)
		}
		if n := len(collated); n > 0 && collated[n-1].Role == m.Role && m.Role != "tool" {
			collated[n-1].Content += "\n\n" + m.Content
		} else {
			collated = append(collated, &m)
		}
	}
	if t.messages {
		err := t.tmpl.Execute(&b, withThink(map[string]any{
			"System": strings.Join(system, "\n\n"), "Messages": toTemplateMessages(collated),
			"Tools": toTemplateTools(c.Tools), "Response": "",
		}))
		return b.String(), err
	}
	turn := map[string]string{"System": "", "Prompt": "", "Response": ""}
	run := func(tm *template.Template) error {
		values := withThink(map[string]any{})
		for k, v := range turn {
			values[k] = v
		}
		turn = map[string]string{"System": "", "Prompt": "", "Response": ""}
		return tm.Execute(&b, values)
	}
	for _, m := range collated {
		switch m.Role {
		case "system":
			if turn["Prompt"] != "" || turn["Response"] != "" {
				if err := run(t.tmpl); err != nil {
					return b.String(), err
				}
			}
			turn["System"] = m.Content
		case "user":
			if turn["Response"] != "" {
				if err := run(t.tmpl); err != nil {
					return b.String(), err
				}
			}
			turn["Prompt"] = m.Content
		case "assistant":
			turn["Response"] = m.Content
		}
	}
	err := run(t.last)
	return b.String(), err
}

func renderOne(name, src, convName string, c conversation) render {
	r := render{Template: name, Conversation: convName}
	t, err := compile(src)
	if err == nil {
		r.Output, err = t.render(c)
	}
	if err != nil {
		r.Output = ""
		r.Error = err.Error()
	}
	return r
}

func main() {
	casesPath := flag.String("cases", "tests/templates/fixtures/cases.json", "conversations and semantics cases")
	dirs := flag.String("templates", "kettle/templates/builtin,tests/templates/fixtures/ollama", "template folders")
	out := flag.String("out", "tests/templates/fixtures/go_renders.json", "output file")
	root := flag.String("root", ".", "the repository root")
	flag.Parse()
	if err := os.Chdir(*root); err != nil {
		panic(err)
	}

	raw, err := os.ReadFile(*casesPath)
	if err != nil {
		panic(err)
	}
	var cs cases
	if err := json.Unmarshal(raw, &cs); err != nil {
		panic(err)
	}
	convNames := make([]string, 0, len(cs.Conversations))
	for n := range cs.Conversations {
		convNames = append(convNames, n)
	}
	sort.Strings(convNames)

	fx := fixtures{Generator: "tools/gotemplate-fixtures", GoVersion: runtime.Version(), Templates: map[string]string{}}
	var files []string
	for _, dir := range strings.Split(*dirs, ",") {
		for _, pattern := range []string{"*.tmpl", "*.gotmpl"} {
			found, _ := filepath.Glob(filepath.Join(dir, pattern))
			files = append(files, found...)
		}
	}
	sort.Strings(files)
	for _, f := range files {
		src, err := os.ReadFile(f)
		if err != nil {
			panic(err)
		}
		name := strings.TrimSuffix(strings.TrimSuffix(filepath.Base(f), ".gotmpl"), ".tmpl")
		fx.Templates[name] = string(src)
		for _, cn := range convNames {
			fx.Renders = append(fx.Renders, renderOne(name, string(src), cn, cs.Conversations[cn]))
		}
	}
	for _, s := range cs.Semantics {
		c, ok := cs.Conversations[s.Conversation]
		if !ok {
			panic(fmt.Sprintf("semantics case %s: no conversation %q", s.Name, s.Conversation))
		}
		name := "semantics/" + s.Name
		fx.Templates[name] = s.Template
		fx.Renders = append(fx.Renders, renderOne(name, s.Template, s.Conversation, c))
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", " ")
	if err := enc.Encode(fx); err != nil {
		panic(err)
	}
	if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
		panic(err)
	}
	fmt.Printf("%d templates, %d renders -> %s\n", len(fx.Templates), len(fx.Renders), *out)
}
