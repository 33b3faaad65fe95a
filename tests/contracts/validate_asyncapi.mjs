// Parses contracts/asyncapi.yaml (or the file given as argument) with the AsyncAPI parser,
// resolving its $refs into contracts/events/, and prints every diagnostic. Exits 1 when any
// diagnostic is an error, so tests and CI fail on a document that tools would reject.
import { fileURLToPath } from 'node:url';
import { resolve } from 'node:path';
import { Parser, fromFile, DiagnosticSeverity } from '@asyncapi/parser';

const repoRoot = resolve(fileURLToPath(import.meta.url), '../../..');
const document = resolve(process.argv[2] ?? resolve(repoRoot, 'contracts/asyncapi.yaml'));

const { document: parsed, diagnostics } = await fromFile(new Parser(), document).parse();
for (const { severity, path, message } of diagnostics) {
  console.log(`${DiagnosticSeverity[severity]}\t/${path.join('/')}\t${message}`);
}
const errors = diagnostics.filter(({ severity }) => severity === DiagnosticSeverity.Error);
if (errors.length > 0 || parsed === undefined) {
  console.error(`${document}: ${errors.length} error(s)`);
  process.exit(1);
}
console.log(`${document}: valid AsyncAPI ${parsed.version()}`);
