package deploy_test

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dashboard is what the tests read of deploy/grafana/dashboards/eddy.json.
type dashboard struct {
	UID           string `json:"uid"`
	Title         string `json:"title"`
	SchemaVersion int    `json:"schemaVersion"`
	Templating    struct {
		List []variable `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type datasourceRef struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type variable struct {
	Name       string        `json:"name"`
	Type       string        `json:"type"`
	Datasource datasourceRef `json:"datasource"`
	Definition string        `json:"definition"`
	Query      struct {
		Query string `json:"query"`
	} `json:"query"`
	IncludeAll bool   `json:"includeAll"`
	AllValue   string `json:"allValue"`
}

type panel struct {
	ID         int           `json:"id"`
	Type       string        `json:"type"`
	Title      string        `json:"title"`
	Datasource datasourceRef `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID        string        `json:"refId"`
		Expr         string        `json:"expr"`
		LegendFormat string        `json:"legendFormat"`
		Datasource   datasourceRef `json:"datasource"`
	} `json:"targets"`
}

// gridColumns is the width of Grafana's grid.
const gridColumns = 24

// wantPanels are the panels docs/observability.md promises.
var wantPanels = []string{
	"Throughput", "End-to-end latency p50 / p99", "Lag per partition", "Pending per partition",
	"Oldest pending age", "Retries", "Dead letters by reason", "Duplicates", "Commit latency p50 / p99",
	"Entries per commit", "Partitions owned per worker", "Leases lost and rebalances", "Workers alive", "Redis reachable",
	"Ingest accepted / rejected", "Ingest requests by status", "Window results", "Late events",
	"Active alerts and open windows",
}

// labelValues is Grafana's label_values(selector, label) or label_values(label).
var labelValues = regexp.MustCompile(`^label_values\((?:(.+),\s*)?([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// readDashboard reads the dashboard and the uid of the provisioned datasource.
func readDashboard(t testing.TB) (d dashboard, dsUID string) {
	t.Helper()
	readJSON(t, dashboardFile, &d)
	var ds struct {
		Datasources []struct {
			UID, Type, URL string
		} `yaml:"datasources"`
	}
	readYAML(t, datasourceFile, &ds)
	if len(ds.Datasources) != 1 {
		t.Fatalf("%s: %d datasources, want 1", datasourceFile, len(ds.Datasources))
	}
	return d, ds.Datasources[0].UID
}

// queryPanels are the panels with queries (not rows).
func (d dashboard) queryPanels() []panel {
	var out []panel
	for _, p := range d.Panels {
		if p.Type != "row" {
			out = append(out, p)
		}
	}
	return out
}

// The dashboard's JSON is what Grafana loads: an identity, the two
// template variables, every promised panel, each on the provisioned
// datasource with well-formed queries, laid out on the grid without
// overlaps. Its queries' results are TestDashboardOnRealPrometheus's.
func TestDashboardStructure(t *testing.T) {
	d, dsUID := readDashboard(t)
	mustf(t, d.UID == "eddy-overview" && d.Title == "Eddy", "uid, title = %q, %q, want eddy-overview, Eddy", d.UID, d.Title)
	mustf(t, d.SchemaVersion >= 36, "schemaVersion = %d, want at least 36 (Grafana 9+)", d.SchemaVersion)

	names := []string{}
	for _, v := range d.Templating.List {
		names = append(names, v.Name)
		mustf(t, v.Type == "query", "variable %s: type %q, want query", v.Name, v.Type)
		mustf(t, v.Datasource.UID == dsUID && v.Datasource.Type == "prometheus", "variable %s: datasource %+v, want prometheus %s", v.Name, v.Datasource, dsUID)
		mustf(t, v.Definition == v.Query.Query, "variable %s: definition %q and query %q differ", v.Name, v.Definition, v.Query.Query)
		mustf(t, labelValues.MatchString(v.Query.Query), "variable %s: query %q is not label_values(…)", v.Name, v.Query.Query)
		mustf(t, v.IncludeAll && v.AllValue == ".*", "variable %s: includeAll %v, allValue %q, want true, .*", v.Name, v.IncludeAll, v.AllValue)
	}
	mustf(t, slices.Equal(names, []string{"pipeline", "worker"}), "variables %v, want [pipeline worker]", names)

	var titles []string
	ids := map[int]bool{}
	var cells []panel
	for _, p := range d.Panels {
		mustf(t, !ids[p.ID], "panel id %d used twice", p.ID)
		ids[p.ID] = true
		g := p.GridPos
		mustf(t, g.W > 0 && g.H > 0 && g.X >= 0 && g.Y >= 0 && g.X+g.W <= gridColumns,
			"panel %q: gridPos %+v is not within the %d columns", p.Title, g, gridColumns)
		for _, o := range cells {
			og := o.GridPos
			if g.X < og.X+og.W && og.X < g.X+g.W && g.Y < og.Y+og.H && og.Y < g.Y+g.H {
				t.Errorf("panels %q and %q overlap: %+v, %+v", o.Title, p.Title, og, g)
			}
		}
		cells = append(cells, p)
	}
	for _, p := range d.queryPanels() {
		titles = append(titles, p.Title)
		mustf(t, p.Type == "timeseries" || p.Type == "stat", "panel %q: type %q, want timeseries or stat", p.Title, p.Type)
		mustf(t, p.Datasource.UID == dsUID, "panel %q: datasource uid %q, want %q", p.Title, p.Datasource.UID, dsUID)
		mustf(t, len(p.Targets) > 0, "panel %q has no query", p.Title)
		refs := map[string]bool{}
		for _, tg := range p.Targets {
			mustf(t, tg.RefID != "" && !refs[tg.RefID], "panel %q: refId %q empty or repeated", p.Title, tg.RefID)
			refs[tg.RefID] = true
			mustf(t, tg.Datasource.UID == dsUID, "panel %q %s: datasource uid %q, want %q", p.Title, tg.RefID, tg.Datasource.UID, dsUID)
			mustf(t, strings.Count(tg.Expr, "(") == strings.Count(tg.Expr, ")"), "panel %q %s: unbalanced parentheses in %s", p.Title, tg.RefID, tg.Expr)
			// Eddy's own series follow the pipeline variable; up and
			// eddy_redis_up (a worker's) have no pipeline.
			switch {
			case strings.Contains(tg.Expr, "eddy_redis_up{"):
				mustf(t, strings.Contains(tg.Expr, `instance=~"$worker"`), "panel %q %s: %s ignores $worker", p.Title, tg.RefID, tg.Expr)
			case strings.Contains(tg.Expr, "eddy_"):
				mustf(t, strings.Contains(tg.Expr, `pipeline=~"$pipeline`), "panel %q %s: %s ignores $pipeline", p.Title, tg.RefID, tg.Expr)
			default:
				mustf(t, strings.Contains(tg.Expr, `up{job="eddy"`), "panel %q %s: %s is neither Eddy's series nor up{job=\"eddy\"}", p.Title, tg.RefID, tg.Expr)
			}
			mustf(t, tg.LegendFormat != "", "panel %q %s: no legendFormat", p.Title, tg.RefID)
		}
	}
	mustf(t, slices.Equal(titles, wantPanels), "panels\n%q\nwant\n%q", titles, wantPanels)
}

// Grafana's provisioning points at the stack's Prometheus and at the
// directory compose mounts the dashboards into.
func TestProvisioning(t *testing.T) {
	var ds struct {
		APIVersion  int `yaml:"apiVersion"`
		Datasources []struct {
			Name, UID, Type, URL, Access string
		} `yaml:"datasources"`
	}
	readYAML(t, datasourceFile, &ds)
	if ds.APIVersion != 1 || len(ds.Datasources) != 1 {
		t.Fatalf("%s: apiVersion %d with %d datasources, want 1 with 1", datasourceFile, ds.APIVersion, len(ds.Datasources))
	}
	c := composeConfig(t)
	src := ds.Datasources[0]
	mustf(t, src.Type == "prometheus" && src.Access == "proxy", "datasource type %q access %q, want prometheus proxy", src.Type, src.Access)
	mustf(t, src.URL == "http://prometheus:9090", "datasource url %q, want http://prometheus:9090 (the compose service)", src.URL)
	if _, ok := c.Services["prometheus"]; !ok {
		t.Errorf("%s has no prometheus service for %s", composeFile, src.URL)
	}

	var prov struct {
		APIVersion int `yaml:"apiVersion"`
		Providers  []struct {
			Type    string
			Options struct{ Path string }
		} `yaml:"providers"`
	}
	readYAML(t, dashProviderFile, &prov)
	if prov.APIVersion != 1 || len(prov.Providers) != 1 || prov.Providers[0].Type != "file" {
		t.Fatalf("%s: %+v, want apiVersion 1 with one file provider", dashProviderFile, prov)
	}
	want := prov.Providers[0].Options.Path
	mounted := ""
	for _, v := range c.Services["grafana"].Volumes {
		if v.Target == want {
			mounted = v.Source
		}
	}
	mustf(t, mounted != "" && strings.HasSuffix(mounted, "/deploy/grafana/dashboards"),
		"grafana mounts %q at the provider's path %s, want deploy/grafana/dashboards", mounted, want)
}
