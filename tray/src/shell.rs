//! The desktop shell: a tao event loop on the main thread, a tray-icon with a muda menu
//! drawn from the [`Controller`]'s model, updates from [`crate::sync`] and menu clicks
//! delivered as user events (an `EventLoopProxy` wakes the loop). It decides nothing: every
//! state change and every click goes through the controller.

use std::path::PathBuf;

use anyhow::Context;
use tao::event::{Event, StartCause};
use tao::event_loop::{ControlFlow, EventLoopBuilder};
use tray_icon::menu::{
    IsMenuItem, Menu as MudaMenu, MenuEvent, MenuItem, PredefinedMenuItem, Submenu,
};
use tray_icon::{TrayIcon, TrayIconBuilder};

use crate::connect::Connection;
use crate::controller::{Action, Controller, Icon, Item, Menu, Notice};
use crate::sync::{self, Cursor, Update};

enum UserEvent {
    Update(Update),
    Click(String),
}

/// Runs the tray until "Quit".
pub fn run(
    runtime: tokio::runtime::Runtime,
    conn: Connection,
    cursor: Option<PathBuf>,
) -> anyhow::Result<()> {
    let client = protocol::Client::new(&conn.gateway, Some(conn.token.clone()))
        .context("the gateway URL is not valid")?;
    let event_loop = EventLoopBuilder::<UserEvent>::with_user_event().build();
    let updates = event_loop.create_proxy();
    let clicks = event_loop.create_proxy();
    runtime.spawn(sync::follow(
        client.clone(),
        Cursor::load(cursor),
        move |u| updates.send_event(UserEvent::Update(u)).is_ok(),
    ));
    MenuEvent::set_event_handler(Some(move |e: MenuEvent| {
        let _ = clicks.send_event(UserEvent::Click(e.id.0));
    }));
    let client_id = format!("tray:{}", whoami());
    let mut controller = Controller::new(&conn.gateway, &client_id);
    controller
        .set_autostart(crate::autostart::entry().is_some_and(|p| crate::autostart::is_on(&p)));
    let mut tray: Option<TrayIcon> = None;
    let mut shown: Option<Menu> = None;
    event_loop.run(move |event, _, flow| {
        *flow = ControlFlow::Wait;
        match event {
            Event::NewEvents(StartCause::Init) => match build_tray(&controller.menu()) {
                Ok(t) => tray = Some(t),
                Err(e) => {
                    tracing::error!(error = %e, "cannot create the tray icon");
                    *flow = ControlFlow::ExitWithCode(1);
                }
            },
            Event::UserEvent(UserEvent::Update(u)) => {
                if let Some(n) = apply(&mut controller, u) {
                    runtime.spawn_blocking(move || notify(n));
                }
                refresh(tray.as_ref(), &controller, &mut shown);
            }
            Event::UserEvent(UserEvent::Click(id)) => {
                let command_id = format!("tray:{}", uuid::Uuid::new_v4());
                match controller.click(&id, &command_id) {
                    Some(Action::Commands(cmds)) => {
                        let client = client.clone();
                        runtime.spawn(async move {
                            if let Err(e) = sync::submit(&client, &cmds).await {
                                tracing::warn!(error = %e, "tray: a command was refused");
                            }
                        });
                    }
                    Some(Action::Open(url)) => open(&url),
                    Some(Action::Autostart(on)) => {
                        match crate::autostart::entry().zip(std::env::current_exe().ok()) {
                            Some((path, program)) => match crate::autostart::set(&path, on, &program) {
                                Ok(()) => controller.set_autostart(on),
                                Err(e) => tracing::warn!(error = %e, path = %path.display(), "tray: cannot change open at login"),
                            },
                            None => tracing::warn!("tray: no home directory for the login entry"),
                        }
                        refresh(tray.as_ref(), &controller, &mut shown);
                    }
                    Some(Action::Quit) => *flow = ControlFlow::Exit,
                    None => tracing::debug!(id, "tray: a click with nothing to do"),
                }
            }
            _ => {}
        }
    })
}

fn apply(c: &mut Controller, u: Update) -> Option<Notice> {
    match u {
        Update::Snapshot(runs) => {
            c.load(&runs);
            None
        }
        Update::Record(r) => c.apply(&r, chrono::Utc::now().timestamp()),
        Update::Mine(mine) => {
            c.set_mine(mine);
            None
        }
        Update::Disconnected(_) => {
            c.set_connected(false);
            None
        }
    }
}

/// Redraws the tray when the model changed.
fn refresh(tray: Option<&TrayIcon>, c: &Controller, shown: &mut Option<Menu>) {
    let menu = c.menu();
    if shown.as_ref() == Some(&menu) {
        return;
    }
    if let Some(t) = tray {
        match muda_menu(&menu.items) {
            Ok(m) => t.set_menu(Some(Box::new(m))),
            Err(e) => tracing::error!(error = %e, "cannot build the tray menu"),
        }
        if let Err(e) = t.set_icon(icon(menu.icon)) {
            tracing::warn!(error = %e, "cannot change the tray icon");
        }
        let _ = t.set_tooltip(Some(&menu.tooltip));
    }
    *shown = Some(menu);
}

fn build_tray(menu: &Menu) -> anyhow::Result<TrayIcon> {
    let mut b = TrayIconBuilder::new()
        .with_id("switchboard")
        .with_menu(Box::new(muda_menu(&menu.items)?))
        .with_tooltip(&menu.tooltip)
        .with_title("Switchboard");
    if let Some(i) = icon(menu.icon) {
        b = b.with_icon(i);
    }
    b.build().context("tray icon")
}

fn muda_menu(items: &[Item]) -> anyhow::Result<MudaMenu> {
    let menu = MudaMenu::new();
    for item in items {
        menu.append(muda_item(item)?.as_ref())?;
    }
    Ok(menu)
}

fn muda_item(item: &Item) -> anyhow::Result<Box<dyn IsMenuItem>> {
    if item.is_separator() {
        return Ok(Box::new(PredefinedMenuItem::separator()));
    }
    if item.submenu {
        let sub = Submenu::new(&item.label, item.enabled);
        for child in &item.children {
            sub.append(muda_item(child)?.as_ref())?;
        }
        return Ok(Box::new(sub));
    }
    Ok(if item.id.is_empty() {
        Box::new(MenuItem::new(&item.label, item.enabled, None))
    } else {
        Box::new(MenuItem::with_id(
            item.id.clone(),
            &item.label,
            item.enabled,
            None,
        ))
    })
}

/// A 32×32 round icon: blue when idle, orange when something waits, grey when offline.
fn icon(state: Icon) -> Option<tray_icon::Icon> {
    let (r, g, b) = match state {
        Icon::Idle => (0x2f, 0x6f, 0xd0),
        Icon::Attention => (0xf0, 0x8a, 0x00),
        Icon::Offline => (0x80, 0x80, 0x80),
    };
    let size = 32u32;
    let mut rgba = Vec::with_capacity((size * size * 4) as usize);
    let c = (size as f32 - 1.0) / 2.0;
    for y in 0..size {
        for x in 0..size {
            let d = ((x as f32 - c).powi(2) + (y as f32 - c).powi(2)).sqrt();
            let alpha = if d <= c { 0xff } else { 0 };
            rgba.extend_from_slice(&[r, g, b, alpha]);
        }
    }
    tray_icon::Icon::from_rgba(rgba, size, size)
        .map_err(|e| tracing::error!(error = %e, "icon buffer rejected"))
        .ok()
}

fn notify(n: Notice) {
    let shown = notify_rust::Notification::new()
        .appname("Switchboard")
        .summary(&n.title)
        .body(&n.body)
        .show();
    if let Err(e) = shown {
        tracing::debug!(error = %e, "no desktop notification service");
    }
}

fn open(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    if let Err(e) = std::process::Command::new(opener).arg(url).spawn() {
        tracing::warn!(url, error = %e, "cannot open the browser");
    }
}

fn whoami() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "desktop".into())
}
