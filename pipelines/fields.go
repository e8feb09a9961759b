package pipelines

import (
	"reflect"

	"go.yaml.in/yaml/v3"
)

// namedExpr is one "name: expression" entry of a mapping.
type namedExpr struct {
	name string
	expr Expr
}

// exprFields is a mapping of names to expressions, kept in YAML order.
type exprFields []namedExpr

func (f *exprFields) decodeNode(c *checker, n *yaml.Node, path string) {
	ok := c.pairs(n, path, func(key string, k, val *yaml.Node, p string) {
		if key == "" {
			c.addAt(k.Line, p, "empty field name")
			return
		}
		ne := namedExpr{name: key}
		c.decode(val, p, reflect.ValueOf(&ne.expr).Elem())
		*f = append(*f, ne)
	})
	if ok && len(n.Content) == 0 {
		c.addAt(n.Line, path, "want at least one field")
	}
}
