// Checks the relay's AsyncAPI document:
//
//  1. parses it with the official AsyncAPI parser and prints every
//     diagnostic (errors, warnings, hints);
//  2. validates each message example against its message's payload schema,
//     and each schema-level example against its schema, since the parser
//     does not do that for AsyncAPI 3 documents.
//
// Exits 1 when the document cannot be read, when any diagnostic has
// severity error, or when an example does not match its schema; 0 otherwise.
//
//   node validate.mjs [path/to/asyncapi.yaml]
//
// The default path is the document embedded in the relay,
// protocol/asyncapi.yaml at the root of the repository.
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';
import AjvModule from 'ajv';

const Ajv = AjvModule.default ?? AjvModule;

const here = path.dirname(fileURLToPath(import.meta.url));
const file = path.resolve(process.argv[2] ?? path.join(here, '..', '..', 'protocol', 'asyncapi.yaml'));

const severityName = {
  [DiagnosticSeverity.Error]: 'error',
  [DiagnosticSeverity.Warning]: 'warning',
  [DiagnosticSeverity.Information]: 'info',
  [DiagnosticSeverity.Hint]: 'hint',
};

let source;
try {
  source = await readFile(file, 'utf8');
} catch (err) {
  console.error(`${file}: ${err.message}`);
  process.exit(1);
}

const parser = new Parser();
const { document, diagnostics } = await parser.parse(source, { source: file });

let errors = 0;
for (const d of diagnostics) {
  if (d.severity === DiagnosticSeverity.Error) {
    errors++;
  }
  const where = d.range ? `${d.range.start.line + 1}:${d.range.start.character + 1}` : '?';
  const at = d.path && d.path.length ? ` at ${d.path.join('.')}` : '';
  console.log(`${file}:${where}: ${severityName[d.severity] ?? d.severity} [${d.code}] ${d.message}${at}`);
}

let examples = 0;
if (document !== undefined) {
  // AsyncAPI schemas are JSON Schema draft 7 plus extension keywords (x-…)
  // and formats such as int64 that only annotate.
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  const check = (what, schema, value) => {
    examples++;
    const validate = ajv.compile(schema);
    if (!validate(value)) {
      errors++;
      for (const e of validate.errors) {
        console.log(`${file}: error [example] ${what}: ${e.instancePath || '/'} ${e.message}`);
      }
    }
  };
  for (const message of document.allMessages()) {
    const payload = message.payload();
    if (payload === undefined) {
      continue;
    }
    message.examples().all().forEach((example, i) => {
      check(`message ${message.id()} example ${example.name() ?? i}`, payload.json(), example.payload());
    });
  }
  for (const schema of document.components().schemas().all()) {
    const json = schema.json();
    if (Array.isArray(json.examples)) {
      json.examples.forEach((value, i) => check(`schema ${schema.id()} example ${i}`, json, value));
    }
  }
}

if (errors > 0 || document === undefined) {
  console.error(`${file}: ${errors} error(s); the document is not valid`);
  process.exitCode = 1;
} else {
  console.log(`${file}: valid AsyncAPI ${document.version()}; ${examples} example(s) match their schemas; ${diagnostics.length} diagnostic(s), none an error`);
}
