from django.core.paginator import Paginator
from django.shortcuts import get_object_or_404, render

from visual_recs.models import Product


def catalog(request):
    products = Product.objects.filter(is_active=True).order_by("pk")
    page = Paginator(products, 24).get_page(request.GET.get("page"))
    return render(request, "shop/catalog.html", {"page": page})


def product_detail(request, pk):
    product = get_object_or_404(Product, pk=pk, is_active=True)
    return render(request, "shop/product.html", {"product": product})
