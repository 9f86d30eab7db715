// Drop a CSV on the edgeseq serve page in Debian's headless Chromium, wait until its
// outputs are plotted, save a screenshot, and print what the page shows as JSON.
//   node drop_csv.mjs --url http://127.0.0.1:PORT/ --csv frames.csv --out shot.png
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { parseArgs } from "node:util";
import { chromium } from "playwright-core";

const { values: args } = parseArgs({
  options: {
    url: { type: "string" },
    csv: { type: "string" },
    out: { type: "string" },
    token: { type: "string" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
    timeout: { type: "string", default: "60000" },
    help: { type: "boolean" },
  },
});
if (args.help || !args.url || !args.csv || !args.out) {
  console.log("usage: node drop_csv.mjs --url URL --csv FILE --out PNG [--token T] [--chromium PATH]");
  process.exit(args.help ? 0 : 2);
}
const timeout = Number(args.timeout);
const browser = await chromium.launch({
  executablePath: args.chromium,
  headless: true,
  timeout,
  args: [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const page = await browser.newPage({ viewport: { width: 1020, height: 900 } });
  const consoleErrors = [], pageErrors = [];
  page.on("console", (m) => m.type() === "error" && consoleErrors.push(m.text()));
  page.on("pageerror", (e) => pageErrors.push(String(e)));
  await page.goto(args.url, { timeout });
  if (args.token) {
    await page.fill("#token", args.token);
    await page.dispatchEvent("#token", "change");
  }
  await page.waitForFunction(() => window.edgeseqPlot && window.edgeseqPlot.model, null, { timeout });
  // a real drop: a DataTransfer holding the file, dragged over and dropped on the panel
  const dt = await page.evaluateHandle(([name, text]) => {
    const d = new DataTransfer();
    d.items.add(new File([text], name, { type: "text/csv" }));
    return d;
  }, [basename(args.csv), readFileSync(args.csv, "utf8")]);
  await page.dispatchEvent("#drop", "dragover", { dataTransfer: dt });
  await page.dispatchEvent("#drop", "drop", { dataTransfer: dt });
  await page.waitForFunction(() => window.edgeseqPlot.done || window.edgeseqPlot.error, null, { timeout });
  // the live counters poll every second: wait until they have counted every frame
  await page.waitForFunction(
    () => Number(document.getElementById("c-frames").textContent) >= window.edgeseqPlot.frames,
    null, { timeout });
  await page.screenshot({ path: args.out, fullPage: true });
  const shown = await page.evaluate(() => ({
    frames: window.edgeseqPlot.frames,
    values: window.edgeseqPlot.values,
    output: window.edgeseqPlot.output,
    error: window.edgeseqPlot.error,
    status: document.getElementById("status").textContent,
    model: document.getElementById("model").innerText,
    counterFrames: Number(document.getElementById("c-frames").textContent),
    legend: document.getElementById("legend").innerText,
    // pixels of the plot drawn in a line colour (not the grey axes, not the white ground)
    plotPixels: (() => {
      const cv = document.getElementById("plot");
      const px = cv.getContext("2d").getImageData(0, 0, cv.width, cv.height).data;
      let n = 0;
      for (let i = 0; i < px.length; i += 4) {
        const [r, g, b, a] = [px[i], px[i + 1], px[i + 2], px[i + 3]];
        if (a > 0 && Math.max(r, g, b) - Math.min(r, g, b) > 60) n++;
      }
      return n;
    })(),
  }));
  Object.assign(shown, { consoleErrors, pageErrors });
  console.log(JSON.stringify(shown));
} finally {
  await browser.close();
}
