//! Actions on a SKU's stock: reserving, releasing and confirming an order's reservation, and
//! putting back stock of a cancelled order.

use chrono::{DateTime, Utc};
use purser_domain::inventory::{AdjustmentReason, Inventory, InventoryCommand, ReleaseReason};
use purser_domain::{OrderId, Quantity, ReservationId, Sku};

use super::{ActionExecutor, Outcome, Step};

impl ActionExecutor {
    pub(super) async fn reserve_stock(
        &self,
        step: &Step<'_>,
        sku: Sku,
        reservation_id: ReservationId,
        order_id: OrderId,
        qty: Quantity,
        expires_at: DateTime<Utc>,
    ) -> Outcome {
        let id = sku.clone();
        let cmd = InventoryCommand::Reserve {
            sku,
            reservation_id,
            order_id,
            qty,
            expires_at,
            now: step.now,
        };
        self.send::<Inventory>(step, &id, cmd).await
    }

    pub(super) async fn release_reservation(
        &self,
        step: &Step<'_>,
        sku: Sku,
        reservation_id: ReservationId,
        reason: ReleaseReason,
    ) -> Outcome {
        let cmd = InventoryCommand::Release {
            reservation_id,
            reason,
            now: step.now,
        };
        self.send::<Inventory>(step, &sku, cmd).await
    }

    pub(super) async fn confirm_reservation(
        &self,
        step: &Step<'_>,
        sku: Sku,
        reservation_id: ReservationId,
    ) -> Outcome {
        let cmd = InventoryCommand::Confirm {
            reservation_id,
            now: step.now,
        };
        self.send::<Inventory>(step, &sku, cmd).await
    }

    pub(super) async fn restock_confirmed(
        &self,
        step: &Step<'_>,
        sku: Sku,
        qty: Quantity,
        order_id: OrderId,
    ) -> Outcome {
        let id = sku.clone();
        let cmd = InventoryCommand::Adjust {
            sku,
            delta: i64::from(qty.get()),
            reason: AdjustmentReason::OrderCancelled,
            note: format!("order {order_id} cancelled after its stock left the shelf"),
            now: step.now,
        };
        self.send::<Inventory>(step, &id, cmd).await
    }
}
