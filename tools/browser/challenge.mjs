// The challenge in a real browser: headless Chromium (Debian's `chromium`) driven by
// playwright-core runs the page's script, gets its clearance and continues — a GET
// navigation, and a form post whose fields must reach the origin after the check.
// Prints one JSON line: what the browser saw and how long each step took.
//
//   node tools/browser/challenge.mjs https://shop.test:PORT
//
// The host resolves to 127.0.0.1 inside Chromium; the edge's certificate is a test one.
import { chromium } from "playwright-core";

const base = process.argv[2];
const host = new URL(base).hostname;
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [`--host-resolver-rules=MAP ${host} 127.0.0.1`, "--no-sandbox"],
});
const out = {};
try {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  const statuses = [];
  page.on("response", (r) => statuses.push([r.request().method(), new URL(r.url()).pathname, r.status()]));

  // 1. A navigation to a challenged page ends on the origin's page by itself.
  let t0 = Date.now();
  await page.goto(`${base}/account`);
  await page.waitForSelector("#origin", { timeout: 20000 });
  out.get_ms = Date.now() - t0;
  out.get_text = await page.textContent("#origin");
  out.cookies = (await context.cookies()).map((c) => ({ name: c.name, httpOnly: c.httpOnly, secure: c.secure, sameSite: c.sameSite }));

  // 2. A second visit: the clearance is kept, no challenge.
  t0 = Date.now();
  const again = await page.goto(`${base}/account?again=1`);
  out.again_status = again.status();
  out.again_ms = Date.now() - t0;

  // 3. A fresh browser (no cookie) posts a form to a challenged URL: after the check
  // the origin receives the same fields.
  const c2 = await browser.newContext({ ignoreHTTPSErrors: true });
  const p2 = await c2.newPage();
  p2.on("response", (r) => statuses.push([r.request().method(), new URL(r.url()).pathname, r.status()]));
  await p2.goto(`${base}/form`);
  t0 = Date.now();
  await p2.click("#go");
  await p2.waitForSelector("#posted", { timeout: 20000 });
  out.post_ms = Date.now() - t0;
  out.post_text = await p2.textContent("#posted");
  out.statuses = statuses;
} catch (e) {
  out.error = String(e && e.stack || e);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
