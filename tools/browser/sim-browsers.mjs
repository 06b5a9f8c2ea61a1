// The attack simulator's sample of real browsers: N headless Chromium users (Debian's
// `chromium`, driven by playwright-core) browsing the simulated bank site with human
// pacing while an attack runs. When the edge challenges them, Chromium runs the page's
// own script. Prints one JSON line: page views, how many reached the origin's page,
// were refused, or failed, and how many challenge pages they met.
//
//   node tools/browser/sim-browsers.mjs https://bank.test:PORT USERS SECONDS PACE
import { chromium } from "playwright-core";

const [base, usersArg, secondsArg, paceArg] = process.argv.slice(2);
const users = Number(usersArg || 2);
const seconds = Number(secondsArg || 30);
const pace = Number(paceArg || 1);
const host = new URL(base).hostname;
const end = Date.now() + seconds * 1000;
const words = ["savings", "mortgage", "card", "loan", "transfer"];
const out = { users, views: 0, ok: 0, refused: 0, failed: 0, challenge_pages: 0, view_ms: [] };

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [`--host-resolver-rules=MAP ${host} 127.0.0.1`, "--no-sandbox"],
});

async function user(i) {
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  const page = await context.newPage();
  page.on("response", (r) => {
    if (r.headers()["rampart-challenge"]) out.challenge_pages++;
  });
  while (Date.now() < end) {
    const r = Math.random();
    const path = r < 0.3 ? "/" : r < 0.65 ? `/search?q=${words[i % words.length]}` : `/product/${Math.floor(Math.random() * 50)}`;
    const t0 = Date.now();
    out.views++;
    try {
      await page.goto(base + path, { timeout: 20000 });
      // The origin's pages have an <h1>Bank</h1>; a challenge continues by itself.
      await page.waitForFunction(() => {
        const h = document.querySelector("h1");
        return h && (h.textContent === "Bank" || !document.getElementById("rampart-challenge"));
      }, null, { timeout: 20000 });
      const h1 = await page.textContent("h1").catch(() => "");
      if (h1 === "Bank") {
        out.ok++;
        out.view_ms.push(Date.now() - t0);
      } else {
        out.refused++;
      }
    } catch (e) {
      out.failed++;
    }
    await new Promise((res) => setTimeout(res, 1000 * pace * (1 + 3 * Math.random())));
  }
  await context.close();
}

try {
  await Promise.all(Array.from({ length: users }, (_, i) => user(i)));
} finally {
  await browser.close();
}
out.view_ms.sort((a, b) => a - b);
out.median_view_ms = out.view_ms.length ? out.view_ms[Math.floor(out.view_ms.length / 2)] : null;
delete out.view_ms;
console.log(JSON.stringify(out));
