// `mlstream schema` (and so the committed schema.graphql, which docs.schema
// keeps equal to it) describes exactly what a running gateway serves: the
// SDL is built with graphql-js, introspected, and compared with the
// gateway's answer to the standard introspection query over HTTP, type by
// type, field by field, argument by argument.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';

import { buildSchema, getIntrospectionQuery, introspectionFromSchema } from 'graphql';

import { MLSTREAM, gqlPost, sharedGateway } from './helpers.mjs';

const SPEC_SCALARS = new Set(['String', 'Int', 'Float', 'Boolean', 'ID']);
const QUERY_OPTIONS = { descriptions: true, specifiedByUrl: true,
  directiveIsRepeatable: true, inputValueDeprecation: true };

const shared = sharedGateway();

function printedSdl() {
  return execFileSync(MLSTREAM, ['schema'], { encoding: 'utf8' });
}

async function servedIntrospection() {
  const r = await gqlPost(shared.gw, { query: getIntrospectionQuery(QUERY_OPTIONS) });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.body.errors, undefined, r.text);
  return r.body.data;
}

// A type reference as SDL text: [String!]!
function ref(t) {
  if (t.kind === 'NON_NULL') return `${ref(t.ofType)}!`;
  if (t.kind === 'LIST') return `[${ref(t.ofType)}]`;
  return t.name;
}

function args(list) {
  return Object.fromEntries((list || []).map((a) => [a.name, {
    type: ref(a.type), defaultValue: a.defaultValue ?? null,
    description: a.description ?? null }]));
}

// The user-visible part of an introspection result as plain data: the
// root types and every named type that is not built in (introspection
// types, and the spec scalars, which SDL never prints), with kind,
// description, fields (type, arguments, deprecation), input fields and
// enum values. Built-in scalars the schema uses are listed by name.
function shape(intro) {
  const s = intro.__schema;
  const types = {};
  const scalarsUsed = [];
  for (const t of s.types) {
    if (t.name.startsWith('__')) continue;
    if (SPEC_SCALARS.has(t.name)) { scalarsUsed.push(t.name); continue; }
    types[t.name] = {
      kind: t.kind,
      description: t.description ?? null,
      specifiedByURL: t.specifiedByURL ?? null,
      fields: t.fields && Object.fromEntries(t.fields.map((f) => [f.name, {
        type: ref(f.type), args: args(f.args), description: f.description ?? null,
        deprecated: f.isDeprecated ? (f.deprecationReason ?? '') : null }])),
      inputFields: t.inputFields && args(t.inputFields),
      enumValues: t.enumValues && t.enumValues.map((v) => v.name),
      interfaces: (t.interfaces || []).map((i) => i.name),
      possibleTypes: t.possibleTypes && t.possibleTypes.map((p) => p.name).sort(),
    };
  }
  const directives = s.directives
    .filter((d) => !['include', 'skip', 'deprecated', 'specifiedBy', 'oneOf'].includes(d.name))
    .map((d) => ({ name: d.name, args: args(d.args), locations: [...d.locations].sort() }));
  return {
    query: s.queryType?.name ?? null,
    mutation: s.mutationType?.name ?? null,
    subscription: s.subscriptionType?.name ?? null,
    types,
    directives,
    scalarsUsed: scalarsUsed.sort(),
  };
}

// Compares the SDL's shape with the served one. Built-in scalars: the
// gateway may know more than the SDL needs, never fewer.
function compare(sdl, served) {
  const printed = shape(introspectionFromSchema(buildSchema(sdl)));
  const live = shape(served);
  for (const name of printed.scalarsUsed)
    assert.ok(live.scalarsUsed.includes(name), `the gateway lacks scalar ${name}`);
  delete printed.scalarsUsed;
  delete live.scalarsUsed;
  assert.deepEqual(printed, live);
}

test('`mlstream schema` equals what the running gateway serves', async () => {
  const sdl = printedSdl();
  const served = await servedIntrospection();
  compare(sdl, served);
  // the contract's root fields are there (a sanity check on the checker)
  const q = served.__schema.types.find((t) => t.name === 'Query');
  assert.ok(q.fields.some((f) => f.name === 'mlStreamingStatus'));
  assert.ok(q.fields.some((f) => f.name === 'mlStreamingModels'));
});

test('the comparison notices a field, an argument or a type the SDL gets wrong', async () => {
  const sdl = printedSdl();
  const served = await servedIntrospection();
  const broken = [
    // a field missing from the SDL (with its description)
    sdl.replace(/\n\n {2}"""[^"]*"""\n {2}windowSize: Int!/, ''),
    // a field type that differs
    sdl.replace('latencyMs: Float!', 'latencyMs: Float'),
    // an argument renamed
    sdl.replace(/after: ID\n\s*\): MLStreamingPrediction!/,
                'since: ID\n  ): MLStreamingPrediction!'),
    // a type the gateway does not serve
    `${sdl}\ntype Extra {\n  x: Int\n}\n`,
  ];
  for (const [i, bad] of broken.entries()) {
    assert.notEqual(bad, sdl, `mutation ${i} changed the SDL`);
    assert.throws(() => compare(bad, served), assert.AssertionError, `mutation ${i} was noticed`);
  }
});
