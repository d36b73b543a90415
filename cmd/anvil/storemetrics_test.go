package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"testing"

	"github.com/anvil-pki/anvil/storage"
)

// The database decorator times every storage.Store method: a method added to
// the interface and not here would pass through the embedded Store untimed.
func TestInstrumentedStoreTimesEveryMethod(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "storemetrics.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	timed := map[string]bool{}
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Recv == nil {
			continue
		}
		if star, ok := fn.Recv.List[0].Type.(*ast.StarExpr); ok {
			if id, ok := star.X.(*ast.Ident); ok && id.Name == "instrumentedStore" {
				timed[fn.Name.Name] = true
			}
		}
	}
	st := reflect.TypeOf((*storage.Store)(nil)).Elem()
	for i := 0; i < st.NumMethod(); i++ {
		name := st.Method(i).Name
		if name != "Close" && !timed[name] {
			t.Errorf("storage.Store.%s is not timed by instrumentedStore (storemetrics.go)", name)
		}
	}
}
