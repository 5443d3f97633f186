package main

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// print writes the table: medians of the rounds, ratios and targets
// (DESIGN.md "Yardsticks").
func (r *results) print(w io.Writer, o options, took time.Duration) {
	fmt.Fprintf(w, "\nrgwsync benchmark: %d round(s), medians; %s; took %s\n", o.rounds, hostLine(), took.Round(time.Second))
	fmt.Fprintf(w, "workloads: small %d x %d B in %d buckets; large %d x %d MiB (%d MiB parts); huge 1 x %d MiB (rgwsync only); metadata %d users + %d buckets; lag one %d B object every %s for %s; scale %dx (rgwsync only)\n\n",
		o.smallObjects, o.smallSize, o.smallBuckets, o.largeCount, o.largeSize>>20, o.partSize>>20, o.hugeSize>>20,
		o.users, o.metaBuckets, o.smallSize, o.lagEvery, o.lagFor, o.scale)
	fig, ratio := r.fig, r.ratio
	tw := newTable(w, "workload", "rgwsync", "built-in", "copy floor", "rgwsync/built-in", "rgwsync/copy floor", "target", "")
	for _, row := range []struct {
		label, key, unit string
		target           string
		want             float64
		vsCopy           bool
	}{
		{"small objects", "small", "obj/s", ">= 1.2x built-in", 1.2, false},
		{"large objects", "large", "MiB/s", ">= 1x built-in, >= 0.9x copy floor", 1, true},
		{"metadata", "metadata", "items/s", ">= 3x built-in", 3, false},
	} {
		vb, sb := ratio(row.key+"/rgwsync", row.key+"/built-in")
		vc, sc := ratio(row.key+"/rgwsync", row.key+"/copy floor")
		v := verdict(vb, sb, row.want, true)
		if row.vsCopy && sc != "-" && vc < 0.9 {
			v = "MISSED"
		}
		tw.row(row.label+" ("+row.unit+")", fig(row.key+"/rgwsync", "%.0f"), fig(row.key+"/built-in", "%.0f"),
			fig(row.key+"/copy floor", "%.0f"), sb, sc, row.target, v)
	}
	for _, row := range []struct{ label, key, unit string }{
		{"small objects", "small", "obj/s"},
		{"metadata", "metadata", "items/s"},
	} {
		x, ok1 := r.med(row.key + "-scale/rgwsync")
		y, ok2 := r.med(row.key + "/rgwsync")
		if !ok1 || !ok2 || y == 0 {
			continue
		}
		// The copy floor's own 10x/1x ratio, where measured, is how much
		// of the slow-down is the gateways' (a zone with 10,000 more
		// buckets is slower for any client): the target is then that
		// rgwsync's cost per item grows no more than 10 % beyond it.
		want, target := 0.9, ">= 0.9x the 1x rate"
		floor, vsFloor := "-", "-"
		fx, ok3 := r.med(row.key + "-scale/copy floor")
		fy, ok4 := r.med(row.key + "/copy floor")
		if ok3 && ok4 && fy > 0 && fx > 0 {
			floor = fmt.Sprintf("%.0f (%.2fx of 1x)", fx, fx/fy)
			vsFloor = fmt.Sprintf("%.2fx", x/fx)
			want, target = 0.9*min(fx/fy, 1), ">= 0.9x the 1x rate x the floor's 10x/1x"
		}
		verd := "met"
		if x/y < want {
			verd = "MISSED"
		}
		tw.row(fmt.Sprintf("%s at %dx the size (%s)", row.label, o.scale, row.unit), fmt.Sprintf("%.0f (%.2fx of 1x)", x, x/y), "-", floor, "-", vsFloor,
			target, verd)
	}
	if _, ok := r.med("huge/rgwsync"); ok {
		tw.row(fmt.Sprintf("1 x %d MiB object (MiB/s)", o.hugeSize>>20), fig("huge/rgwsync", "%.0f"), "-", "-", "-", "-", "", "")
	}
	r.lagRows(tw)
	if _, ok := r.med("verify/rgwsync"); ok {
		_, sc := ratio("verify/rgwsync", "verify/copy floor")
		tw.row(fmt.Sprintf("verify of %d objects, attributes too (versions/s)", o.verifyObjects), fig("verify/rgwsync", "%.0f"), "-",
			fig("verify/copy floor", "%.0f")+" (both zones listed)", "-", sc, "", "")
	}
	for _, ph := range []string{"large", "huge", "small-scale", "metadata-scale", "verify"} {
		for _, svc := range []string{"exporter", "applier", "verify"} {
			v, ok := r.med("rss/" + ph + "/" + svc)
			if !ok {
				continue
			}
			target, verd := "< 64 MiB", "met"
			if v >= 64<<20 {
				verd = "MISSED"
			}
			if strings.HasSuffix(ph, "-scale") {
				target, verd = "(no target)", "" // a backlog's memory, shown
			}
			tw.row(fmt.Sprintf("peak RSS %s, %s run (MiB)", svc, ph), fmt.Sprintf("%.1f", v/(1<<20)), "-", "-", "-", "-", target, verd)
		}
	}
	tw.flush()
	if len(r.notes) > 0 {
		fmt.Fprintln(w, "\nrgwsync metrics per phase (services restarted for each catch-up):")
		for _, n := range r.notes {
			fmt.Fprintln(w, "  "+n)
		}
	}
}

// table is a plain aligned text table (also valid Markdown).
type table struct {
	w    io.Writer
	rows [][]string
}

func newTable(w io.Writer, head ...string) *table {
	t := &table{w: w}
	t.rows = append(t.rows, head)
	sep := make([]string, len(head))
	for i := range sep {
		sep[i] = "---"
	}
	t.rows = append(t.rows, sep)
	return t
}

func (t *table) row(cells ...string) { t.rows = append(t.rows, cells) }

func (t *table) flush() {
	width := make([]int, len(t.rows[0]))
	for _, r := range t.rows {
		for i, c := range r {
			width[i] = max(width[i], len(c))
		}
	}
	for _, r := range t.rows {
		var b strings.Builder
		b.WriteString("|")
		for i, c := range r {
			if r[0] == "---" {
				c = strings.Repeat("-", width[i])
			}
			fmt.Fprintf(&b, " %-*s |", width[i], c)
		}
		fmt.Fprintln(t.w, b.String())
	}
}

// fig is a figure's median in format f, "-" when not measured.
func (r *results) fig(name string, f string) string {
	if v, ok := r.med(name); ok {
		return fmt.Sprintf(f, v)
	}
	return "-"
}

// ratio is a ÷ b, and as printed ("-" when either is missing).
func (r *results) ratio(a, b string) (float64, string) {
	x, ok1 := r.med(a)
	y, ok2 := r.med(b)
	if !ok1 || !ok2 || y == 0 {
		return 0, "-"
	}
	return x / y, fmt.Sprintf("%.2fx", x/y)
}

// verdict is "met" or "MISSED" for v against want ("-" when s, the
// printed figure, is missing).
func verdict(v float64, s string, want float64, higher bool) string {
	if s == "-" {
		return "-"
	}
	if (higher && v >= want) || (!higher && v <= want) {
		return "met"
	}
	return "MISSED"
}

// lagRows: the lag percentiles and the idle source's load.
func (r *results) lagRows(tw *table) {
	fig, ratio := r.fig, r.ratio
	// Issue #13: p50 no worse than the built-in's in the same run, p99
	// within 250 ms.
	for _, q := range []struct {
		key, label, target string
		want               float64 // 0: the built-in's figure
	}{{"lag50", "lag p50 (ms)", "<= built-in", 0}, {"lag99", "lag p99 (ms)", "<= 250 ms", 250}} {
		v, ok := r.med(q.key + "/rgwsync")
		_, sb := ratio(q.key+"/rgwsync", q.key+"/built-in")
		want, okW := q.want, q.want > 0
		if !okW {
			want, okW = r.med(q.key + "/built-in")
		}
		verd := "-"
		if ok && okW {
			verd = verdict(v, "x", want, false)
		}
		tw.row(q.label, fig(q.key+"/rgwsync", "%.0f"), fig(q.key+"/built-in", "%.0f"), "-", sb, "-", q.target, verd)
	}
	if v, ok := r.med("idle/rgwsync"); ok {
		b, okB := r.med("idle/built-in")
		_, sb := ratio("idle/rgwsync", "idle/built-in")
		verd := "-"
		if okB {
			verd = verdict(v, "x", b, false)
		}
		tw.row(fmt.Sprintf("requests/s to an idle source (%s after the lag run)", idleFor), fig("idle/rgwsync", "%.1f"), fig("idle/built-in", "%.1f"),
			"-", sb, "-", "<= built-in", verd)
	}
}
