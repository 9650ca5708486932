//! Hostile plugins written by hand in WAT, for what a Rust plugin cannot do:
//! grow a `funcref` table, or own many linear memories. Each is a core module
//! that exports the note-store functions by their canonical-ABI names,
//! wrapped into a component by `wit-component` against `wit/v0.1/notes.wit` (hostile
//! plugins need no newer version: 0.1 is served), as
//! `wasm-tools component embed` + `component new` would. The host sees a
//! real, valid plugin: `info()` answers, and every note operation does its
//! damage and then traps.

const NOTES_WIT: &str = include_str!("../../wit/v0.1/notes.wit");
const EXPORT: &str = "notes:plugin/note-store@0.1.0";

/// Grows a `funcref` table by 100k elements at a time until refused (each
/// element is a pointer on the host: 64M of them would be 512 MiB).
pub fn table_bomb() -> Vec<u8> {
    component(
        "table-bomb",
        "(table $bomb 1 funcref)",
        "(loop $more
           (br_if $more (i32.ne (table.grow $bomb (ref.null func) (i32.const 100000)) (i32.const -1))))",
    )
}

/// Owns `extra` linear memories besides the one the canonical ABI uses, and
/// grows each by `mib_each` MiB and writes every byte of it, so the pages are
/// really in the host's RSS.
pub fn memory_bomb(extra: u32, mib_each: u32) -> Vec<u8> {
    let pages = mib_each * 16;
    let memories: String = (1..=extra).map(|i| format!("(memory $m{i} 0)\n")).collect();
    let body: String = (1..=extra)
        .map(|i| {
            format!(
                "(drop (memory.grow $m{i} (i32.const {pages})))
                 (memory.fill $m{i} (i32.const 0) (i32.const 1) (i32.const {bytes}))\n",
                bytes = pages * 65536
            )
        })
        .collect();
    component(&format!("memory-bomb-{extra}x{mib_each}"), &memories, &body)
}

/// A plugin that does nothing but trap; `name` makes each one a new digest.
pub fn inert(name: &str) -> Vec<u8> {
    component(name, "", "")
}

/// A plugin that imports an HTTP-like interface besides its world, as a
/// JavaScript component built with `wasi:http` does: the host links no such
/// thing.
pub fn needs_network() -> Vec<u8> {
    const NET_WIT: &str = "package example:net;
        interface fetch { get: func(url: string) -> string; }
        world needs-net { include notes:plugin/note-plugin@0.1.0; import fetch; }";
    build(
        "needs-net",
        r#"(import "example:net/fetch" "get" (func $get (param i32 i32 i32)))"#,
        "",
        "(call $get (i32.const 0) (i32.const 0) (i32.const 256))",
        Some((NET_WIT, "needs-net")),
    )
}

/// A plugin that imports `wasi:sockets` (as componentize-py's libc does)
/// and whose every note operation asks it for the network.
pub fn opens_a_socket() -> Vec<u8> {
    const SOCKETS_WIT: &str = "package example:sockets;
        world needs-sockets { include notes:plugin/note-plugin@0.1.0; import wasi:sockets/instance-network@0.2.0; }
        package wasi:sockets@0.2.0 {
            interface network { resource network; }
            interface instance-network { use network.{network}; instance-network: func() -> network; }
        }";
    build(
        "opens-a-socket",
        r#"(import "wasi:sockets/instance-network@0.2.0" "instance-network" (func $network (result i32)))"#,
        "",
        "(drop (call $network))",
        Some((SOCKETS_WIT, "needs-sockets")),
    )
}

/// A plugin whose note operations each do `bomb`, then trap.
fn component(name: &str, declarations: &str, bomb: &str) -> Vec<u8> {
    build(name, "", declarations, bomb, None)
}

/// `component`, with core `imports` first and, optionally, another WIT
/// package (which may include the notes world) and its world to embed.
fn build(name: &str, imports: &str, declarations: &str, bomb: &str, extra_wit: Option<(&str, &str)>) -> Vec<u8> {
    let version = "0.1.0";
    // After the return area at 64, so a long name (a hostile one) is not
    // overwritten by the answer that points at it; the heap starts past it.
    let name_at = 128;
    let version_at = name_at + name.len();
    let heap = (version_at + version.len() + 7).div_ceil(8).max(512) * 8;
    let wat = format!(
        r#"(module
  {imports}
  (memory (export "memory") 1)
  {declarations}
  (global $heap (mut i32) (i32.const {heap}))
  (data (i32.const {name_at}) "{name}{version}")

  ;; A bump allocator: enough for the host to hand over the call's strings.
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32)
    (local $at i32)
    (local.set $at (i32.and (i32.add (global.get $heap) (i32.const 7)) (i32.const -8)))
    (global.set $heap (i32.add (local.get $at) (local.get 3)))
    (if (i32.gt_u (global.get $heap) (i32.mul (memory.size) (i32.const 65536)))
      (then (drop (memory.grow (i32.add (i32.shr_u (global.get $heap) (i32.const 16)) (i32.const 1))))))
    (local.get $at))

  ;; info() -> plugin-info {{ name, version, supports-migration }}, returned
  ;; through a return area: (ptr, len), (ptr, len), bool.
  (func (export "{EXPORT}#info") (result i32)
    (i32.store (i32.const 64) (i32.const {name_at}))
    (i32.store (i32.const 68) (i32.const {name_len}))
    (i32.store (i32.const 72) (i32.const {version_at}))
    (i32.store (i32.const 76) (i32.const {version_len}))
    (i32.store8 (i32.const 80) (i32.const 1))
    (i32.const 64))

  (func $bomb {bomb})

  (func (export "{EXPORT}#create-note") (param i32 i32 i32 i32 i32 i32 i64 i32) (result i32)
    (call $bomb) unreachable)
  (func (export "{EXPORT}#get-note") (param i32 i32 i32 i32 i32) (result i32)
    (call $bomb) unreachable)
  (func (export "{EXPORT}#list-notes") (param i32 i32 i32) (result i32)
    (call $bomb) unreachable)
  (func (export "{EXPORT}#update-note") (param i32 i32 i32 i32 i32 i32 i64 i32 i64 i32) (result i32)
    (call $bomb) unreachable)
  (func (export "{EXPORT}#delete-note") (param i32 i32 i32 i32 i32) (result i32)
    (call $bomb) unreachable)
)"#,
        name_len = name.len(),
        version_len = version.len(),
    );
    let mut module = wat::parse_str(&wat).unwrap_or_else(|e| panic!("hostile plugin {name}: {e}"));
    let mut resolve = wit_parser::Resolve::default();
    let mut package = resolve.push_str("notes.wit", NOTES_WIT).expect("wit/v0.1/notes.wit parses");
    let mut world_name = "note-plugin";
    if let Some((wit, world)) = extra_wit {
        package = resolve.push_str("extra.wit", wit).expect("the extra WIT parses");
        world_name = world;
    }
    let world = resolve.select_world(&[package], Some(world_name)).expect("the world");
    wit_component::embed_component_metadata(&mut module, &resolve, world, wit_component::StringEncoding::UTF8)
        .expect("embed the component type");
    wit_component::ComponentEncoder::default()
        .module(&module)
        .and_then(|encoder| encoder.validate(true).encode())
        .unwrap_or_else(|e| panic!("hostile plugin {name} is not a valid component: {e:#}"))
}
