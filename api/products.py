"""/v1/products: the minimal catalogue and stock admin the saga needs."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Response
from sqlalchemy import BigInteger, cast, func, select, update
from sqlalchemy.exc import IntegrityError

from api.deps import Admin, DatabaseUrl, Limit, Offset, Reader
from api.errors import ApiError
from api.views import product_out
from models.db import unit_of_work
from models.inventory import Product
from models.schemas import ErrorBody, Page, PageMeta, ProductCreate, ProductOut, StockUpdate

router = APIRouter(prefix="/v1/products", tags=["products"])
MAX_TOTAL = 2**31 - 1  # products.total is a 32-bit integer
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ErrorBody, "description": "PRODUCT_NOT_FOUND"}}


@router.get("", response_model=Page[ProductOut], summary="List the catalogue by sku")
def list_products(client: Reader, database_url: DatabaseUrl, limit: Limit = 20, offset: Offset = 0) -> Page[ProductOut]:
    """A page of products ordered by sku."""
    with unit_of_work(database_url) as session:
        total = session.scalar(select(func.count()).select_from(Product)) or 0
        rows = session.scalars(select(Product).order_by(Product.sku).limit(limit).offset(offset)).all()
        return Page[ProductOut](
            data=[product_out(r) for r in rows], meta=PageMeta(limit=limit, offset=offset, total=total)
        )


@router.get("/{product_id}", response_model=ProductOut, responses=NOT_FOUND, summary="One product and its stock")
def get_product(product_id: uuid.UUID, client: Reader, database_url: DatabaseUrl) -> ProductOut:
    """The product with its price and stock counters."""
    with unit_of_work(database_url) as session:
        product = session.get(Product, product_id)
        if product is None:
            raise not_found(product_id)
        return product_out(product)


@router.post(
    "", status_code=201, response_model=ProductOut, responses={409: {"model": ErrorBody}}, summary="Add a product"
)
def create_product(body: ProductCreate, client: Admin, database_url: DatabaseUrl, response: Response) -> ProductOut:
    """Add a product with its initial stock on the shelf; 409 SKU_ALREADY_EXISTS if the sku is taken."""
    product = Product(
        sku=body.sku, name=body.name, price_cents=body.price, currency=body.currency,
        total=body.stock, available=body.stock, reserved=0, shipped=0,
    )  # fmt: skip
    try:
        with unit_of_work(database_url) as session:
            session.add(product)
            session.flush()
    except IntegrityError:
        raise ApiError(
            409, "SKU_ALREADY_EXISTS", f"a product with sku {body.sku!r} exists", {"sku": body.sku}
        ) from None
    response.headers["Location"] = f"/v1/products/{product.id}"
    return product_out(product)


@router.put(
    "/{product_id}/stock",
    response_model=ProductOut,
    responses={**NOT_FOUND, 409: {"model": ErrorBody, "description": "STOCK_OUT_OF_RANGE"}},
    summary="Set the units on the shelf",
)
def set_stock(product_id: uuid.UUID, body: StockUpdate, client: Admin, database_url: DatabaseUrl) -> ProductOut:
    """Set `available` in one conditional UPDATE; `total` moves by the same delta so stock stays conserved."""
    new = body.available
    statement = (
        update(Product)
        .where(Product.id == product_id, cast(Product.total, BigInteger) - Product.available + new <= MAX_TOTAL)
        .values(available=new, total=Product.total - Product.available + new, updated_at=func.now())
        .returning(Product)
        .execution_options(synchronize_session=False)
    )
    with unit_of_work(database_url) as session:
        product = session.scalars(statement).one_or_none()
        if product is not None:
            return product_out(product)
        if session.get(Product, product_id) is None:
            raise not_found(product_id)
    raise ApiError(409, "STOCK_OUT_OF_RANGE", f"total stock would exceed {MAX_TOTAL}", {"available": new})


def not_found(product_id: uuid.UUID) -> ApiError:
    return ApiError(404, "PRODUCT_NOT_FOUND", f"no product {product_id}", {"productId": str(product_id)})
