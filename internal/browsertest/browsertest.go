// Package browsertest starts Debian's headless Chromium for tests (`make browser` installs it).
// Tests that use it fail, never skip, when Chromium is missing; callers skip under -short.
package browsertest

import (
	"context"
	"os/exec"
	"testing"

	"github.com/chromedp/chromedp"
)

// Path returns Chromium's path, or fails the test saying how to install it.
func Path(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("chromium is not on PATH: run make browser, or go test -short to skip the browser test")
	return ""
}

// Start returns a chromedp context for a fresh headless Chromium with its own profile, stopped
// by t.Cleanup, and the browser's path for messages. extra options (window size, proxy) come
// after the defaults. The context has no timeout: its first use starts the browser, which lives
// as long as the context; bound each group of actions with a child context instead.
func Start(t testing.TB, extra ...chromedp.ExecAllocatorOption) (context.Context, string) {
	t.Helper()
	path := Path(t)
	// NoSandbox: the tests run as root, where Chromium's sandbox refuses to start.
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), append(opts, extra...)...)
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	return ctx, path
}

// Open loads url, waits until selector is visible, and returns a function that evaluates
// JavaScript returning a string on the page; either failing fails the test. browser is Start's
// path, for the message.
func Open(t testing.TB, ctx context.Context, browser, url, selector string) (eval func(js string) string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url), chromedp.WaitVisible(chromedp.CSS(selector))); err != nil {
		t.Fatalf("start chromium (%s) and load %s: %v", browser, url, err)
	}
	return func(js string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return s
	}
}
