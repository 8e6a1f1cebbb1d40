// Validates AsyncAPI documents with @asyncapi/parser: the parser and rule set behind `asyncapi validate`
// of the AsyncAPI CLI, without the CLI's ~300 MB of generators and Studio (which also wants Node 24).
// Fails on errors and on warnings, so the document stays clean.
//   node asyncapi/validate.mjs asyncapi/asyncapi.json
import { readFile } from "node:fs/promises";
import { Parser, DiagnosticSeverity } from "@asyncapi/parser";

const parser = new Parser();
let failed = false;
for (const path of process.argv.slice(2)) {
  const { document, diagnostics } = await parser.parse(await readFile(path, "utf8"), { source: path });
  const serious = diagnostics.filter((d) => d.severity <= DiagnosticSeverity.Warning);
  for (const d of serious) {
    const where = d.path.length ? d.path.join(".") : "(document)";
    console.error(`${path}: ${DiagnosticSeverity[d.severity]} ${d.code} at ${where}: ${d.message}`);
  }
  if (!document || serious.length) {
    failed = true;
  } else {
    console.log(`${path}: valid AsyncAPI ${document.version()} (${document.channels().length} channels, ` +
      `${document.operations().length} operations, ${document.allMessages().length} messages)`);
  }
}
process.exit(failed ? 1 : 0);
