package report

import (
	"bytes"
	"context"
	"image/png"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/firedrill-dev/firedrill/drill/chain"
	"github.com/firedrill-dev/firedrill/internal/browsertest"
)

// TestHTMLReportInChromium renders the HTML report in headless Chromium with no network, reads
// what the page shows (innerText, so hidden text does not count), measures the charts, and
// prints it to PDF and PNG. The files are kept in $FIREDRILL_REPORT_ARTIFACTS when it is set.
func TestHTMLReportInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium; skipped under -short")
	}
	t.Parallel()
	signer := chain.NewSigner(testKey())
	src, _ := fixture(t, 45, signer)
	r := newReport(t, src, Options{PublicKey: signer.Public()})
	dir := t.TempDir()
	if d := os.Getenv("FIREDRILL_REPORT_ARTIFACTS"); d != "" {
		dir = d
	}
	file := filepath.Join(dir, "report.html")
	if err := os.WriteFile(file, render(t, r, "html"), 0o644); err != nil {
		t.Fatal(err)
	}

	bctx, browser := browsertest.Start(t, chromedp.WindowSize(1200, 900),
		// self-contained means it renders with no network at all
		chromedp.ProxyServer("http://127.0.0.1:9"))
	ctx, cancel := context.WithTimeout(bctx, 3*time.Minute) // generous: the machine is shared
	defer cancel()
	eval := browsertest.Open(t, ctx, browser, "file://"+file, "#integrity-statement")
	text := eval(`document.body.innerText`)
	integrity := eval(`document.querySelector("#integrity-statement").innerText`)
	passRate := eval(`document.querySelector("#pass-rate").innerText`)
	requests := eval(`String(performance.getEntriesByType("resource").length)`)
	charts, err := chromedp.Run(ctx, chromedp.Evaluate[[]map[string]float64](`[...document.querySelectorAll("svg.chart")].map(s => {
		const b = s.getBoundingClientRect(); return {w: b.width, h: b.height, points: s.querySelectorAll("circle").length} })`))
	if err != nil {
		t.Fatal(err)
	}
	screenshot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	pdf, err := chromedp.Run(ctx, chromedp.PrintToPDF(chromedp.PDFPaper(chromedp.PaperA4), chromedp.PDFPreferCSSPageSize()))
	if err != nil {
		t.Fatalf("print to PDF: %v", err)
	}
	for _, want := range []string{"shop-velero", "control-plane-etcd", "billing <db> & co", "SOC2-A1.3", "FAILED",
		"velero server unreachable", "firedrill history verify --history /var/lib/firedrill/history.db", r.Summary.Integrity.ChainHead} {
		if !strings.Contains(text, want) {
			t.Errorf("the page does not show %q", want)
		}
	}
	for _, sc := range r.Summary.Scenarios {
		if !strings.Contains(text, Percent(sc.PassRate)) {
			t.Errorf("the page does not show %s's pass rate %s", sc.Name, Percent(sc.PassRate))
		}
	}
	if !strings.Contains(passRate, Percent(r.Summary.PassRate)) {
		t.Errorf("pass rate shows %q, want %s", passRate, Percent(r.Summary.PassRate))
	}
	if !strings.HasPrefix(integrity, "Intact.") || !strings.Contains(integrity, "hash chain over all 45 records") || !strings.Contains(integrity, "signature verified with key "+chain.Fingerprint(signer.Public())) {
		t.Errorf("integrity statement: %q", integrity)
	}
	if len(charts) != 6 {
		t.Errorf("%d charts, want 6", len(charts))
	}
	for i, c := range charts {
		if c["w"] < 100 || c["h"] < 50 || (i%2 == 0 && c["points"] == 0) {
			t.Errorf("chart %d rendered as %v", i, c)
		}
	}
	if requests != "0" {
		t.Errorf("the page loaded %s resources besides itself", requests)
	}
	img, err := png.Decode(bytes.NewReader(screenshot))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if b := img.Bounds(); b.Dx() < 800 || b.Dy() < 2000 {
		t.Errorf("screenshot is %v: the page did not lay out its runs", b)
	}
	pages := len(regexp.MustCompile(`/Type\s*/Page[^s]`).FindAll(pdf, -1))
	if !bytes.HasPrefix(pdf, []byte("%PDF-")) || pages < 2 {
		t.Errorf("PDF: %d bytes, %d pages", len(pdf), pages)
	}
	for name, data := range map[string][]byte{"report.png": screenshot, "report.pdf": pdf} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("PDF %d pages, screenshot %v, in %s", pages, img.Bounds().Size(), dir)
}
