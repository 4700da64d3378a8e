"""/v1/products: the minimal catalogue and stock admin the saga needs.

Reads are ORM sessions; every write is `pipeline.stock`'s, the one writer of products and reservations.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import RowMapping, exists, select

from api.deps import Admin, DatabaseUrl, Limit, Reader
from api.errors import ApiError
from api.openapi_docs import WITH_BODY, Responses, error
from api.pagination import Cursor, NoOffset, decode_cursor, page
from api.views import product_out
from models.db import transaction, unit_of_work
from models.inventory import Product
from models.schemas import Page, ProductCreate, ProductOut, StockUpdate
from pipeline import stock

router = APIRouter(prefix="/v1/products", tags=["products"])
NOT_FOUND: Responses = {404: error("PRODUCT_NOT_FOUND")}


@router.get("", response_model=Page[ProductOut], summary="List the catalogue by sku")
def list_products(
    request: Request, client: Reader, database_url: DatabaseUrl, _: NoOffset, limit: Limit = 20, cursor: Cursor = None
) -> JSONResponse:
    """A page of products ordered by sku (unique, so the sku alone is the position)."""
    query = select(Product)
    if cursor is not None:
        (after,) = decode_cursor(cursor, 1)
        query = query.where(Product.sku > after)
    with unit_of_work(database_url) as session:
        rows = session.scalars(query.order_by(Product.sku).limit(limit + 1)).all()
        return page(request, rows, limit, lambda product: (product.sku,), product_document)


@router.get("/{product_id}", response_model=ProductOut, responses=NOT_FOUND, summary="One product and its stock")
def get_product(product_id: uuid.UUID, client: Reader, database_url: DatabaseUrl) -> ProductOut:
    """The product with its price and stock counters."""
    with unit_of_work(database_url) as session:
        product = session.get(Product, product_id)
        if product is None:
            raise not_found(product_id)
        return product_out(product)


@router.post(
    "",
    status_code=201,
    response_model=ProductOut,
    summary="Add a product",
    responses={**WITH_BODY, 409: error("SKU_ALREADY_EXISTS")},
)
def create_product(body: ProductCreate, client: Admin, database_url: DatabaseUrl, response: Response) -> ProductOut:
    """Add a product with its initial stock on the shelf; 409 SKU_ALREADY_EXISTS if the sku is taken."""
    with transaction(database_url) as connection:
        row = stock.create_product(
            connection, sku=body.sku, name=body.name, price_cents=body.price, currency=body.currency, stock=body.stock
        )
    if row is None:
        raise ApiError(409, "SKU_ALREADY_EXISTS", f"a product with sku {body.sku!r} exists", {"sku": body.sku})
    response.headers["Location"] = f"/v1/products/{row['id']}"
    return row_out(row)


@router.put(
    "/{product_id}/stock",
    response_model=ProductOut,
    responses={**WITH_BODY, **NOT_FOUND, 409: error("STOCK_OUT_OF_RANGE")},
    summary="Set the units on the shelf",
)
def set_product_stock(product_id: uuid.UUID, body: StockUpdate, client: Admin, database_url: DatabaseUrl) -> ProductOut:
    """Set `available` in one conditional UPDATE; `total` moves by the same delta so stock stays conserved."""
    with transaction(database_url) as connection:
        row = stock.set_available(connection, product_id, body.available)
        if row is not None:
            return row_out(row)
        if not connection.scalar(select(exists().where(Product.id == product_id))):
            raise not_found(product_id)
    raise ApiError(
        409, "STOCK_OUT_OF_RANGE", f"total stock would exceed {stock.MAX_TOTAL}", {"available": body.available}
    )


def row_out(row: RowMapping) -> ProductOut:
    """The document of a product row as `pipeline.stock` returned it."""
    return product_out(Product(**row))


def product_document(product: Product) -> dict[str, Any]:
    return product_out(product).model_dump(mode="json")


def not_found(product_id: uuid.UUID) -> ApiError:
    return ApiError(404, "PRODUCT_NOT_FOUND", f"no product {product_id}", {"productId": str(product_id)})
