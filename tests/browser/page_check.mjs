// Opens the dev platform's page in headless Chromium, waits until `expected` robots show
// frames, measures each tile's frame rate over `seconds`, saves a screenshot, and prints one
// JSON line: {"tiles": n, "fps": {robot_id: fps}, "status": {robot_id: text}}.
// Usage: node page_check.mjs URL EXPECTED_ROBOTS SCREENSHOT.png [SECONDS]
import { chromium } from "playwright-core";

const [url, expectedText, screenshot, secondsText] = process.argv.slice(2);
const expected = Number(expectedText);
const seconds = Number(secondsText || "3");
const executablePath = process.env.CHROMIUM || "/usr/bin/chromium";

const browser = await chromium.launch({
  executablePath,
  args: [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1100, height: 620 } });
  await page.goto(url);
  await page.waitForFunction(
    (n) => document.querySelectorAll("figure[data-robot-id]").length >= n && [...document.querySelectorAll("figure[data-robot-id]")].every((f) => Number(f.dataset.frames) > 0),
    expected,
    { timeout: 20000 },
  );
  const frames = () =>
    page.$$eval("figure[data-robot-id]", (tiles) =>
      Object.fromEntries(tiles.map((t) => [t.dataset.robotId, Number(t.dataset.frames || 0)])));
  const before = await frames();
  await page.waitForTimeout(seconds * 1000);
  const after = await frames();
  const fps = {};
  for (const id of Object.keys(after)) fps[id] = (after[id] - (before[id] || 0)) / seconds;
  const status = await page.$$eval("figure[data-robot-id]", (tiles) =>
    Object.fromEntries(tiles.map((t) => [t.dataset.robotId, t.querySelector("figcaption").textContent])));
  await page.screenshot({ path: screenshot });
  console.log(JSON.stringify({ tiles: Object.keys(after).length, fps, status }));
} finally {
  await browser.close();
}
