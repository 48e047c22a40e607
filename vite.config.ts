import { defineConfig } from "vite";

// The demo page (demo/) is built to dist/ as a static site. Dawn (`webgpu`) is Node-only: it is imported
// through a variable specifier in src/gpu/device.ts and never reaches the browser bundle.
export default defineConfig({
  root: "demo",
  base: "./",
  build: { outDir: "../dist", emptyOutDir: true, target: "es2022" },
  optimizeDeps: { exclude: ["webgpu"] },
  worker: { format: "es" },
});
