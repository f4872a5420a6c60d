// An independent ActivityPub peer for Jardin's interop tests, built only on Fedify's public API.
//
// One Person actor (default `alice`) with RSA and Ed25519 keys generated at start, WebFinger, personal and shared
// inboxes, followers. Every activity that reaches an inbox is recorded (Fedify calls the listeners only for verified
// ones; the unverified ones are recorded through onUnverifiedActivity and still answered 401). Follows are accepted.
// A JSON control API under /_control/ lets a test act as alice: follow, reply, create, like, undo, send.
// Prints `READY <origin>` on stdout once listening; logs go to stderr. Loopback and tests only.
import { AsyncLocalStorage } from "node:async_hooks";
import http from "node:http";
import { randomUUID } from "node:crypto";
import { parseArgs } from "node:util";
import { configure, defaultTextFormatter } from "@logtape/logtape";
import { createFederation, generateCryptoKeyPair, MemoryKvStore } from "@fedify/fedify";
import {
  Accept, Activity, Create, Dislike, Endpoints, Follow, Like, Note, Page, Person, PUBLIC_COLLECTION, Reject, Undo,
} from "@fedify/vocab";
import { Temporal } from "@js-temporal/polyfill";

const { values: args } = parseArgs({
  options: {
    host: { type: "string", default: "127.0.0.3" },
    port: { type: "string", default: "0" },
    username: { type: "string", default: "alice" },
    // "rfc9421" (Fedify's default) or "draft-cavage-http-signatures-12": the form of the first signing attempt.
    "first-knock": { type: "string", default: "rfc9421" },
    "log-level": { type: "string", default: "warning" },
  },
});
const USERNAME = args.username;
const ACTIVITY_CLASSES = [Create, Like, Dislike, Follow, Undo, Accept];

await configure({
  contextLocalStorage: new AsyncLocalStorage(),
  sinks: { stderr: (record) => process.stderr.write(defaultTextFormatter(record)) },
  loggers: [
    { category: "fedify", lowestLevel: args["log-level"], sinks: ["stderr"] },
    { category: ["logtape", "meta"], lowestLevel: "warning", sinks: ["stderr"] },
  ],
});

const state = {
  received: [], // activities that reached an inbox, verified or not
  requests: [], // every POST to this server outside /_control/: path, status, signature form
  sent: [], // every activity alice sent: id, type, inboxes, ok, error
  followers: new Map(), // actor id -> the actor (a Fedify Recipient)
  following: new Map(), // actor id -> { follow: Follow id, state: pending | accepted | rejected }
  objects: new Map(), // id -> alice's own objects and activities, served by the object dispatchers
};
const keyPairs = [await generateCryptoKeyPair("RSASSA-PKCS1-v1_5"), await generateCryptoKeyPair("Ed25519")];

// Listen first on the asked port (0 = any free one), so the origin Fedify mints ids with is the real one.
const server = http.createServer((req, res) => {
  handle(req, res).catch((error) => {
    process.stderr.write(`peer: ${error?.stack ?? error}\n`);
    if (!res.headersSent) res.writeHead(500, { "Content-Type": "text/plain" });
    res.end(String(error));
  });
});
await new Promise((resolve, reject) => {
  server.once("error", reject);
  server.listen(Number(args.port), args.host, resolve);
});
const origin = `http://${args.host}:${server.address().port}`;

const federation = createFederation({
  kv: new MemoryKvStore(),
  origin,
  allowPrivateAddress: true, // loopback over http; never outside tests
  firstKnock: args["first-knock"],
  // No queue: deliveries run inside the control call, so a test sees their outcome (and inbox listeners run inside
  // the inbox request). Signature verification and its time window stay at Fedify's defaults.
});

federation
  .setActorDispatcher("/users/{identifier}", async (ctx, identifier) => {
    if (identifier !== USERNAME) return null;
    const keys = await ctx.getActorKeyPairs(identifier);
    return new Person({
      id: ctx.getActorUri(identifier),
      preferredUsername: identifier,
      name: `${identifier} (Fedify peer)`,
      summary: "An independent Fedify instance for Jardin's interop tests.",
      url: ctx.getActorUri(identifier),
      inbox: ctx.getInboxUri(identifier),
      outbox: ctx.getOutboxUri(identifier),
      endpoints: new Endpoints({ sharedInbox: ctx.getInboxUri() }),
      followers: ctx.getFollowersUri(identifier),
      following: ctx.getFollowingUri(identifier),
      manuallyApprovesFollowers: false,
      publicKey: keys[0].cryptographicKey,
      assertionMethods: keys.map((key) => key.multikey),
    });
  })
  .mapHandle((_ctx, username) => (username === USERNAME ? USERNAME : null))
  .setKeyPairsDispatcher((_ctx, identifier) => (identifier === USERNAME ? keyPairs : []));

federation
  .setFollowersDispatcher("/users/{identifier}/followers", (_ctx, identifier) =>
    identifier === USERNAME ? { items: [...state.followers.values()] } : null)
  .setCounter(() => state.followers.size);
federation
  .setFollowingDispatcher("/users/{identifier}/following", (_ctx, identifier) =>
    identifier === USERNAME ? { items: [...state.following.keys()].map((id) => new URL(id)) } : null)
  .setCounter(() => state.following.size);
federation
  .setOutboxDispatcher("/users/{identifier}/outbox", (_ctx, identifier) => (identifier === USERNAME ? { items: [] } : null))
  .setCounter(() => 0);

const served = (ctx, cls, values) => state.objects.get(ctx.getObjectUri(cls, values).href) ?? null;
federation.setObjectDispatcher(Note, "/notes/{id}", (ctx, values) => served(ctx, Note, values));
federation.setObjectDispatcher(Page, "/pages/{id}", (ctx, values) => served(ctx, Page, values));
for (const cls of ACTIVITY_CLASSES) {
  federation.setObjectDispatcher(cls, `/activities/${cls.name.toLowerCase()}/{id}`, (ctx, values) =>
    served(ctx, cls, values));
}

federation
  .setInboxListeners("/users/{identifier}/inbox", "/inbox")
  .on(Activity, async (ctx, activity) => {
    record(ctx.data, activity, true, null);
    if (activity instanceof Follow) await onFollow(activity);
    else if (activity instanceof Accept || activity instanceof Reject) onAnswer(activity);
    else if (activity instanceof Undo) onUndo(ctx.data, activity);
  })
  .onUnverifiedActivity((ctx, activity, reason) => {
    record(ctx.data, activity, false, reason.type); // returning nothing keeps Fedify's 401
  })
  .onError((_ctx, error) => process.stderr.write(`peer: inbox listener failed: ${error?.stack ?? error}\n`));

const context = () => federation.createContext(new URL(origin), { raw: null, signature: null, path: null });
const aliceId = () => context().getActorUri(USERNAME);
const newId = (cls) => context().getObjectUri(cls, { id: randomUUID() });

function record(data, activity, verified, reason) {
  const raw = data?.raw ?? {};
  state.received.push({
    type: typeof raw.type === "string" ? raw.type : activity.constructor.name,
    id: activity.id?.href ?? null,
    actor: activity.actorId?.href ?? null,
    object: summarize(raw.object),
    verified,
    reason,
    signature: data?.signature ?? null,
    key_id: data?.keyId ?? null,
    inbox: data?.path ?? null,
    raw,
  });
}

function summarize(value) {
  if (value == null) return null;
  if (typeof value === "string") return { id: value };
  if (Array.isArray(value)) return summarize(value[0]);
  const id = (v) => (v == null ? null : typeof v === "string" ? v : Array.isArray(v) ? id(v[0]) : v.id ?? null);
  return {
    id: value.id ?? null,
    type: value.type ?? null,
    name: value.name ?? null,
    content: value.content ?? null,
    inReplyTo: id(value.inReplyTo),
    attributedTo: id(value.attributedTo),
    audience: id(value.audience),
    context: id(value.context),
    actor: id(value.actor),
    to: value.to ?? null,
    cc: value.cc ?? null,
    object: typeof value.object === "object" ? summarize(value.object) : value.object ?? null,
  };
}

async function onFollow(follow) {
  if (follow.objectId?.href !== aliceId().href) return;
  const ctx = context();
  const follower = await follow.getActor(ctx);
  if (follower?.id == null) return;
  state.followers.set(follower.id.href, follower);
  // Answer after the inbox has replied, as a queued server would.
  setTimeout(() => {
    const accept = new Accept({ id: newId(Accept), actor: aliceId(), object: follow, to: follower.id });
    deliver(ctx, accept, [follower]).catch(() => {}); // the outcome is in state.sent
  }, 0);
}

function onAnswer(answer) {
  const followId = answer.objectId?.href;
  for (const [target, entry] of state.following) {
    if (entry.follow === followId || (followId == null && target === answer.actorId?.href)) {
      entry.state = answer instanceof Accept ? "accepted" : "rejected";
    }
  }
}

function onUndo(data, undo) {
  const inner = data?.raw?.object;
  const innerType = typeof inner === "object" && inner != null ? inner.type : null;
  if (innerType === "Follow" && undo.actorId != null) state.followers.delete(undo.actorId.href);
}

// Handles (`user@host:port`, `@user@host`, `acct:user@host`) are resolved with WebFinger over http here: Fedify's own
// WebFinger client always uses https for acct: resources. Objects are then fetched with signed GETs.
async function lookup(ctx, target) {
  let url = String(target);
  if (!/^https?:\/\//.test(url)) url = await webfinger(url);
  const documentLoader = await ctx.getDocumentLoader({ identifier: USERNAME });
  const object = await ctx.lookupObject(url, { documentLoader });
  if (object?.id == null) throw new ControlError(404, `could not look up ${target}`);
  return object;
}

async function webfinger(handle) {
  const acct = handle.replace(/^acct:/, "").replace(/^@/, "");
  const host = acct.slice(acct.lastIndexOf("@") + 1);
  if (!acct.includes("@") || host === "") throw new ControlError(400, `not a handle: ${handle}`);
  const url = `http://${host}/.well-known/webfinger?resource=${encodeURIComponent(`acct:${acct}`)}`;
  const response = await fetch(url, { headers: { Accept: "application/jrd+json" } }).catch((error) => {
    throw new ControlError(404, `WebFinger ${url} failed: ${error.cause?.message ?? error.message}`);
  });
  if (!response.ok) throw new ControlError(404, `WebFinger ${url} answered ${response.status}`);
  const links = (await response.json()).links ?? [];
  const self = links.find((link) => link.rel === "self" && /activity\+json|ld\+json/.test(link.type ?? ""));
  if (self?.href == null) throw new ControlError(404, `WebFinger ${url} has no self link`);
  return self.href;
}

async function deliver(ctx, activity, recipients) {
  const inboxes = recipients.map((r) => (r.endpoints?.sharedInbox ?? r.inboxId)?.href).filter(Boolean);
  const entry = { id: activity.id.href, type: activity.constructor.name, inboxes, ok: false, error: null };
  state.sent.push(entry);
  state.objects.set(activity.id.href, activity);
  try {
    if (inboxes.length === 0) throw new Error("no recipient has an inbox");
    await ctx.sendActivity({ identifier: USERNAME }, recipients, activity, { preferSharedInbox: true });
    entry.ok = true;
  } catch (error) {
    entry.error = String(error?.message ?? error);
    throw new ControlError(502, `delivery of ${entry.type} failed: ${entry.error}`);
  }
  return entry;
}

async function recipientsOf(ctx, object, extra = []) {
  const ids = [...object.attributionIds, ...object.audienceIds].map((u) => u.href);
  const found = [];
  for (const id of new Set([...ids, ...extra])) {
    if (id !== aliceId().href) found.push(await lookup(ctx, id));
  }
  return found;
}

class ControlError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

function need(body, ...names) {
  for (const name of names) if (body[name] == null) throw new ControlError(400, `missing field: ${name}`);
}

const followers = () => [...state.followers.values()];
const now = () => Temporal.Now.instant();

const control = {
  "GET /_control/health": () => ({ ok: true, actor: aliceId().href, handle: `${USERNAME}@${new URL(origin).host}` }),
  "GET /_control/received": () => state.received,
  "GET /_control/requests": () => state.requests,
  "GET /_control/sent": () => state.sent,
  "GET /_control/followers": () => [...state.followers.keys()],
  "GET /_control/following": () => Object.fromEntries(state.following),

  "POST /_control/follow": async (ctx, body) => {
    need(body, "target");
    const target = await lookup(ctx, body.target);
    const follow = new Follow({ id: newId(Follow), actor: aliceId(), object: target.id, to: target.id });
    state.following.set(target.id.href, { follow: follow.id.href, state: "pending" });
    await deliver(ctx, follow, [target]);
    return { id: follow.id.href, target: target.id.href };
  },

  "POST /_control/unfollow": async (ctx, body) => {
    need(body, "target");
    const target = await lookup(ctx, body.target);
    const entry = state.following.get(target.id.href);
    if (entry == null) throw new ControlError(404, `not following ${target.id.href}`);
    const follow = state.objects.get(entry.follow);
    const undo = new Undo({ id: newId(Undo), actor: aliceId(), object: follow, to: target.id });
    await deliver(ctx, undo, [target]);
    state.following.delete(target.id.href);
    return { id: undo.id.href, target: target.id.href };
  },

  // A public Note to alice's followers (and whoever `to` names): something for others to reply to.
  "POST /_control/note": async (ctx, body) => {
    need(body, "content");
    const named = await Promise.all((body.to ?? []).map((t) => lookup(ctx, t)));
    const tos = [PUBLIC_COLLECTION, ...named.map((a) => a.id)];
    const ccs = [ctx.getFollowersUri(USERNAME)];
    const note = new Note({
      id: newId(Note), attribution: aliceId(), content: body.content, mediaType: "text/html", tos, ccs, published: now(),
    });
    state.objects.set(note.id.href, note);
    const create = new Create({ id: newId(Create), actor: aliceId(), object: note, tos, ccs, published: now() });
    await deliver(ctx, create, [...named, ...followers()]);
    return { id: create.id.href, object: note.id.href };
  },

  // A reply: to its parent's authors, its audience (a Group), anyone in `to`, an explicit `inbox`, alice's followers.
  "POST /_control/reply": async (ctx, body) => {
    need(body, "inReplyTo", "content");
    let parent = null;
    try {
      parent = await lookup(ctx, body.inReplyTo);
    } catch (error) {
      if (body.inbox == null) throw error;
    }
    const audience = body.audience ?? parent?.audienceId?.href ?? null;
    const recipients = parent == null ? [] : await recipientsOf(ctx, parent, audience == null ? [] : [audience]);
    const named = await Promise.all((body.to ?? []).map((t) => lookup(ctx, t)));
    recipients.push(...named);
    if (body.inbox != null) recipients.push({ id: new URL(body.inbox), inboxId: new URL(body.inbox) });
    const tos = [PUBLIC_COLLECTION, ...named.map((a) => a.id)];
    const ccs = [ctx.getFollowersUri(USERNAME), ...(parent?.attributionIds ?? []), ...(audience ? [new URL(audience)] : [])];
    const note = new Note({
      id: newId(Note), attribution: aliceId(), content: body.content, mediaType: "text/html",
      replyTarget: new URL(body.inReplyTo), audience: audience ? new URL(audience) : null, tos, ccs, published: now(),
    });
    state.objects.set(note.id.href, note);
    const create = new Create({
      id: newId(Create), actor: aliceId(), object: note, tos, ccs, published: now(),
      audience: audience ? new URL(audience) : null,
    });
    await deliver(ctx, create, [...recipients, ...followers()]);
    return { id: create.id.href, object: note.id.href };
  },

  // A new thread in a Group, Lemmy-style: Create(Page) with a name, addressed to the group and sent to its inbox.
  "POST /_control/create": async (ctx, body) => {
    need(body, "audience", "name");
    const group = await lookup(ctx, body.audience);
    const tos = [group.id, PUBLIC_COLLECTION];
    const ccs = [ctx.getFollowersUri(USERNAME)];
    const page = new Page({
      id: newId(Page), attribution: aliceId(), name: body.name, content: body.content ?? "", mediaType: "text/html",
      audience: group.id, tos, ccs, published: now(),
    });
    state.objects.set(page.id.href, page);
    const create = new Create({
      id: newId(Create), actor: aliceId(), object: page, tos, ccs, audience: group.id, published: now(),
    });
    await deliver(ctx, create, [group, ...followers()]);
    return { id: create.id.href, object: page.id.href };
  },

  "POST /_control/like": (ctx, body) => react(ctx, body, Like),
  "POST /_control/dislike": (ctx, body) => react(ctx, body, Dislike),

  // Undo any activity alice sent (a Like, a Follow…), to the recipients it had.
  "POST /_control/undo": async (ctx, body) => {
    need(body, "activity");
    const done = state.objects.get(body.activity);
    const sent = state.sent.find((s) => s.id === body.activity);
    if (done == null || sent == null) throw new ControlError(404, `alice sent no activity ${body.activity}`);
    const targets = await Promise.all([...done.toIds, ...done.ccIds].filter((u) => u.href !== PUBLIC_COLLECTION.href &&
      u.href !== ctx.getFollowersUri(USERNAME).href).map((u) => lookup(ctx, u.href)));
    const undo = new Undo({ id: newId(Undo), actor: aliceId(), object: done, tos: done.toIds, ccs: done.ccIds });
    await deliver(ctx, undo, targets);
    return { id: undo.id.href };
  },

  // Any activity as JSON-LD (it must have an @context; its actor should be alice), signed and sent to `to` and `inbox`.
  "POST /_control/send": async (ctx, body) => {
    need(body, "activity");
    const activity = await Activity.fromJsonLd(
      { id: new URL(`/activities/sent/${randomUUID()}`, origin).href, actor: aliceId().href, ...body.activity },
      { documentLoader: ctx.documentLoader, contextLoader: ctx.contextLoader },
    );
    const recipients = await Promise.all((body.to ?? []).map((t) => lookup(ctx, t)));
    if (body.inbox != null) recipients.push({ id: new URL(body.inbox), inboxId: new URL(body.inbox) });
    await deliver(ctx, activity, recipients);
    return { id: activity.id.href };
  },
};

async function react(ctx, body, cls) {
  need(body, "object");
  const object = await lookup(ctx, body.object);
  const recipients = await recipientsOf(ctx, object);
  const audience = object.audienceId;
  const reaction = new cls({
    id: newId(cls), actor: aliceId(), object: object.id, tos: recipients.map((r) => r.id), ccs: [PUBLIC_COLLECTION],
    audience,
  });
  await deliver(ctx, reaction, recipients);
  return { id: reaction.id.href };
}

async function handle(req, res) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  const body = Buffer.concat(chunks);
  const url = new URL(req.url, origin);
  if (url.pathname.startsWith("/_control/")) return await answerControl(req.method, url.pathname, body, res);

  const headers = new Headers();
  for (const [name, value] of Object.entries(req.headers)) {
    for (const v of Array.isArray(value) ? value : [value]) if (v != null) headers.append(name, v);
  }
  const data = { raw: parseJson(body), ...signatureOf(headers), path: url.pathname };
  const hasBody = req.method !== "GET" && req.method !== "HEAD";
  const request = new Request(url, { method: req.method, headers, body: hasBody ? body : undefined });
  const response = await federation.fetch(request, { contextData: data });
  if (req.method === "POST") {
    state.requests.push({
      path: url.pathname, status: response.status, signature: data.signature, key_id: data.keyId,
      id: data.raw?.id ?? null, type: data.raw?.type ?? null,
    });
  }
  res.writeHead(response.status, Object.fromEntries(response.headers));
  res.end(Buffer.from(await response.arrayBuffer()));
}

async function answerControl(method, path, body, res) {
  const route = control[`${method} ${path}`];
  let status = 200;
  let payload;
  try {
    if (route == null) throw new ControlError(404, `no control route ${method} ${path}`);
    const parsed = method === "POST" ? parseJson(body) : {};
    if (parsed == null || typeof parsed !== "object") throw new ControlError(400, "the body must be a JSON object");
    payload = await route(context(), parsed);
  } catch (error) {
    status = error instanceof ControlError ? error.status : 500;
    payload = { error: String(error?.message ?? error) };
    if (status === 500) process.stderr.write(`peer: ${error?.stack ?? error}\n`);
  }
  res.writeHead(status, { "Content-Type": "application/json" });
  res.end(JSON.stringify(payload));
}

function parseJson(body) {
  try {
    return body.length === 0 ? null : JSON.parse(body.toString("utf8"));
  } catch {
    return null;
  }
}

function signatureOf(headers) {
  const input = headers.get("signature-input");
  if (input != null) return { signature: "rfc9421", keyId: /keyid="([^"]*)"/i.exec(input)?.[1] ?? null };
  const cavage = headers.get("signature");
  if (cavage != null) return { signature: "draft-cavage", keyId: /keyId="([^"]*)"/.exec(cavage)?.[1] ?? null };
  return { signature: null, keyId: null };
}

const stop = () => server.close(() => process.exit(0));
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
process.stdout.write(`READY ${origin}\n`);
