// The emulator through HubSpot's official Node SDK (@hubspot/api-client), used as its
// documentation shows: standard properties, merges into a new record, owners and pipelines.
// Run by tests/contract/test_node_sdk.py against a running emulator (EMULATOR_URL, TOKEN).
import assert from 'node:assert/strict';
import { test } from 'node:test';

import hubspot from '@hubspot/api-client';

const client = new hubspot.Client({
  accessToken: process.env.TOKEN,
  basePath: process.env.EMULATOR_URL,
  numberOfApiCallRetries: 0,
});

/** The HTTP status and HubSpot's error body of a call the SDK threw for. */
async function refusal(call) {
  try {
    await call();
  } catch (error) {
    return { status: error.code, body: error.body };
  }
  assert.fail('HubSpot refused nothing');
}

test('standard properties are there, typed as HubSpot types them', async () => {
  const properties = {
    email: 'node.standard@example.com',
    jobtitle: 'Engineer',
    mobilephone: '+1 555 0100',
    address: '1 Main St',
    state: 'MA',
    zip: '02139',
    country: 'United States',
    hs_lead_status: 'NEW',
  };
  const created = await client.crm.contacts.basicApi.create({ properties });
  const read = await client.crm.contacts.basicApi.getById(created.id, Object.keys(properties));
  for (const [name, value] of Object.entries(properties)) {
    assert.equal(read.properties[name], value, name);
  }

  const company = await client.crm.companies.basicApi.create({
    properties: { name: 'Node Inc', website: 'node.example.com', description: 'SDK', numberofemployees: '12' },
  });
  assert.equal(company.properties.numberofemployees, '12');

  const employees = await client.crm.properties.coreApi.getByName('companies', 'numberofemployees');
  assert.deepEqual([employees.type, employees.fieldType], ['number', 'number']);
  const stage = await client.crm.properties.coreApi.getByName('contacts', 'lifecyclestage');
  assert.equal(stage.type, 'enumeration');
  assert.ok(stage.options.some((o) => o.value === 'customer'), 'lifecyclestage has HubSpot options');
  const dealType = await client.crm.properties.coreApi.getByName('deals', 'dealtype');
  assert.deepEqual(
    dealType.options.map((o) => o.value),
    ['newbusiness', 'existingbusiness'],
  );

  const unknown = await refusal(() =>
    client.crm.contacts.basicApi.create({ properties: { email: 'x@example.com', no_such_property: 'x' } }),
  );
  assert.equal(unknown.status, 400);
  assert.equal(unknown.body.category, 'VALIDATION_ERROR');
});

test('merging two contacts makes a new record that both old ids read as', async () => {
  const contacts = client.crm.contacts.basicApi;
  const primary = await contacts.create({ properties: { email: 'node.primary@example.com', firstname: 'Ada' } });
  const secondary = await contacts.create({
    properties: { email: 'node.secondary@example.com', firstname: 'Augusta', lastname: 'King' },
  });

  const merged = await contacts.merge({ primaryObjectId: primary.id, objectIdToMerge: secondary.id });
  assert.notEqual(merged.id, primary.id);
  assert.notEqual(merged.id, secondary.id);

  const wanted = ['email', 'firstname', 'lastname', 'hs_merged_object_ids'];
  const current = await contacts.getById(merged.id, wanted);
  assert.equal(current.properties.email, 'node.primary@example.com', "the primary's values win");
  assert.equal(current.properties.firstname, 'Ada');
  assert.equal(current.properties.lastname, 'King', "the merged record's fill what the primary lacks");
  assert.deepEqual(current.properties.hs_merged_object_ids.split(';').sort(), [primary.id, secondary.id].sort());
  for (const old of [primary.id, secondary.id]) {
    const resolved = await contacts.getById(old, ['email']);
    assert.equal(resolved.id, merged.id, `old id ${old} reads as the merged record`);
  }
});

test('owners page, look up by id and by email, and stand on records', async () => {
  const owners = client.crm.owners.ownersApi;
  const page = await owners.getPage(undefined, undefined, 2);
  assert.equal(page.results.length, 2);
  assert.ok(page.paging.next.after, 'more owners on the next page');
  const all = (await owners.getPage(undefined, undefined, 100)).results;
  assert.ok(all.length > 2);
  const owner = all[1];
  assert.ok(owner.email && owner.firstName && owner.userId, 'an owner is a person');

  const byId = await owners.getById(Number(owner.id));
  assert.equal(byId.email, owner.email);
  const byEmail = await owners.getPage(owner.email);
  assert.deepEqual(
    byEmail.results.map((o) => o.id),
    [owner.id],
  );

  const contact = await client.crm.contacts.basicApi.create({
    properties: { email: 'node.owned@example.com', hubspot_owner_id: owner.id },
  });
  assert.equal(contact.properties.hubspot_owner_id, owner.id);
  const noSuchOwner = await refusal(() =>
    client.crm.contacts.basicApi.create({ properties: { email: 'node.unowned@example.com', hubspot_owner_id: '1' } }),
  );
  assert.equal(noSuchOwner.status, 400);
});

test('pipelines hold stage ids, and records must name one of their stages', async () => {
  const pipelines = client.crm.pipelines.pipelinesApi;
  const deals = await pipelines.getAll('deals');
  const sales = deals.results.find((p) => p.id === 'default');
  assert.ok(sales, 'the default sales pipeline');
  const stageIds = sales.stages.map((s) => s.id);
  assert.ok(stageIds.includes('appointmentscheduled') && stageIds.includes('closedwon'), stageIds.join());
  const tickets = await pipelines.getAll('tickets');
  assert.ok(tickets.results.some((p) => p.id === '0'), 'the default support pipeline');

  const deal = await client.crm.deals.basicApi.create({
    properties: { dealname: 'Node deal', pipeline: 'default', dealstage: 'appointmentscheduled' },
  });
  assert.equal(deal.properties.dealstage, 'appointmentscheduled');
  const badStage = await refusal(() =>
    client.crm.deals.basicApi.create({ properties: { dealname: 'Bad', pipeline: 'default', dealstage: 'no-such-stage' } }),
  );
  assert.equal(badStage.status, 400);

  const custom = await pipelines.create('deals', {
    label: 'Renewals',
    displayOrder: 1,
    stages: [
      { label: 'Due', displayOrder: 0, metadata: { probability: '0.5' } },
      { label: 'Renewed', displayOrder: 1, metadata: { probability: '1.0' } },
    ],
  });
  assert.equal(custom.stages.length, 2);
  const renewal = await client.crm.deals.basicApi.create({
    properties: { dealname: 'Renewal', pipeline: custom.id, dealstage: custom.stages[0].id },
  });
  assert.equal(renewal.properties.pipeline, custom.id);
});
